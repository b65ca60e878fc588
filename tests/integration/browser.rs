//! The report in a real headless Chromium, driven through chromedriver's WebDriver
//! protocol (plain JSON over HTTP, spoken with the tests' own HTTP client): the page at
//! a phone's 390×844 and a desktop's 1280×800, the rendered DOM checked (totals, rows,
//! the call-back list, hostile names as text), nothing wider than the phone, and
//! screenshots saved under `target/report-screenshots/` as the run's artifacts.
//!
//! Needs `chromium` and `chromium-driver` (Debian); `.ci/run` installs both and runs
//! these tests with the other ignored ones. Without them the test fails and says so.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::{MARCH, seeded};
use crate::support::*;

struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = call(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let r = request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json".to_owned())],
        body.as_bytes(),
    );
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}: {}", r.text()));
    assert!(
        r.status == 200,
        "chromedriver {method} {path}: {} {v}",
        r.status
    );
    v["value"].clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    fn start() -> Driver {
        let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is not installed: apt-get install chromium chromium-driver (.ci/run does)");
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--force-device-scale-factor=1"
            ]}
        }}});
        let mut driver = Driver {
            child,
            addr,
            session: String::new(),
        };
        let v = call(addr, "POST", "/session", Some(&caps));
        driver.session = v["sessionId"].as_str().expect("a session").to_owned();
        driver
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn size(&self, w: u32, h: u32) {
        call(
            self.addr,
            "POST",
            &self.path("/window/rect"),
            Some(&json!({"width": w, "height": h})),
        );
    }

    fn go(&self, url: &str) {
        call(
            self.addr,
            "POST",
            &self.path("/url"),
            Some(&json!({"url": url})),
        );
    }

    fn eval(&self, script: &str) -> Value {
        call(
            self.addr,
            "POST",
            &self.path("/execute/sync"),
            Some(&json!({"script": script, "args": []})),
        )
    }

    fn screenshot(&self, name: &str) {
        let png = call(self.addr, "GET", &self.path("/screenshot"), None);
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
#[ignore = "needs chromium and chromium-driver: run by CI (.ci/run installs them) with the other ignored tests"]
fn the_report_renders_in_chromium_on_a_phone_and_a_desktop() {
    let env = Env::new(&base_config(""));
    let d = seeded(&env);
    // A share link: a browser without credentials, as a customer opens it.
    let cfg = env.config();
    let o = env.run(&[
        "share-link",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "report",
    ]);
    let link = String::from_utf8(o.stdout).unwrap();
    let query = link.trim().split_once("/report").unwrap().1.to_owned();
    let url = format!("http://{}/report{query}&{}", d.addr, &MARCH[1..]);
    let expected_total = get(d.addr, &format!("/calls.csv{MARCH}"), &bearer())
        .text()
        .lines()
        .count()
        - 1;
    let driver = Driver::start();
    for (w, h, name) in [(390, 844, "phone"), (1280, 800, "desktop")] {
        driver.size(w, h);
        driver.go(&url);
        let total = driver.eval("return document.getElementById('total-calls').textContent");
        assert_eq!(total, json!(expected_total.to_string()), "{name}");
        let rows =
            driver.eval("return document.querySelectorAll('#call-back-list tbody tr').length");
        assert!(
            rows.as_u64().unwrap() > 0,
            "{name}: the call-back list has rows"
        );
        let tel = driver
            .eval("return document.querySelector('#call-back-list a[href^=\"tel:+1\"]') !== null");
        assert_eq!(tel, json!(true));
        // Hostile names are text in the DOM: no element was made from them.
        let names = driver.eval("return Array.from(document.querySelectorAll('#call-back-list td')).map(t => t.textContent).join('|')");
        let names = names.as_str().unwrap();
        assert!(
            names.contains("<script>alert(1)</script>"),
            "{name}: {names}"
        );
        assert!(names.contains("\"><img src=x onerror=alert(1)>"));
        let injected =
            driver.eval("return document.querySelectorAll('body script, body img').length");
        assert_eq!(injected, json!(0), "{name}");
        let charts = driver.eval("return document.querySelectorAll('svg.chart').length");
        assert_eq!(charts, json!(2));
        // Nothing is wider than the window: the page does not scroll sideways, and only
        // the tables' own scroll boxes may hold wide content.
        let overflow = driver.eval(
            "const w = document.documentElement.clientWidth;\
             const wide = Array.from(document.body.querySelectorAll('*')).filter(e => {\
               if (e.closest('.scroll')) return false;\
               const r = e.getBoundingClientRect(); return r.right > w + 1; });\
             return [document.documentElement.scrollWidth, w, wide.map(e => e.tagName + '#' + e.id).slice(0, 5)];",
        );
        let scroll_w = overflow[0].as_u64().unwrap();
        let client_w = overflow[1].as_u64().unwrap();
        assert!(
            scroll_w <= client_w,
            "{name}: page is {scroll_w} px wide in {client_w}: {overflow}"
        );
        assert_eq!(overflow[2], json!([]), "{name}: elements past the edge");
        driver.screenshot(&format!("report-{name}.png"));
        // The whole page, for the docs: a window as tall as the page.
        let tall = driver.eval("return document.documentElement.scrollHeight");
        driver.size(
            w,
            tall.as_u64()
                .unwrap_or(u64::from(h))
                .clamp(u64::from(h), 6000) as u32
                + 140,
        );
        driver.screenshot(&format!("report-{name}-full.png"));
    }
    // A period link and the custom form keep the share link's scope.
    driver.go(&url);
    let href = driver.eval("return document.querySelector('nav.periods a').getAttribute('href')");
    assert!(href.as_str().unwrap().contains("sig="), "{href}");
}
