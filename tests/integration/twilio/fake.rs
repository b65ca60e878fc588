//! A fake of Twilio's REST API (2010-04-01) on loopback, written from Twilio's OpenAPI
//! description (`tests/data/twilio-oai/api_v2010_subset.json`, cut from
//! `twilio/twilio-oai` by `extract.py` there).
//!
//! It reads the description at start and holds every request to it: the path must be
//! one of its paths, each query parameter one the operation declares (integers
//! within their bounds), each form field one its request body declares (enums,
//! booleans and URIs checked), required fields present. A request that breaks the
//! description gets a 400 and is kept in `violations`, which the tests assert empty.
//! Resources are built from the description's own examples, then given the test's
//! values; every key must be a property of the resource's schema. Credentials are
//! checked (account SID + auth token, or API key + secret); lists page through
//! `next_page_uri`; `faults` answers the next requests with 401/404/429/503.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine;
use serde_json::{Map, Value, json};

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
/// The auth token the tests' configs carry: the account's.
pub const AUTH_TOKEN: &str = crate::support::TOKEN;
pub const API_KEY: &str = "SK0123456789abcdef0123456789abcdef";
pub const API_SECRET: &str = "fake-api-key-secret-9a8b7c";

const SPEC: &str = include_str!("../../data/twilio-oai/api_v2010_subset.json");

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    pub status: u16,
}

/// An answer forced on the next request (status 200: an HTML page instead of JSON).
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<u64>,
}

#[derive(Default)]
pub struct State {
    pub numbers: Vec<Value>,
    pub calls: Vec<Value>,
    pub messages: Vec<Value>,
    pub faults: VecDeque<Fault>,
    pub seen: Vec<Seen>,
    pub violations: Vec<String>,
    /// Forces lists into pages of this size (the client asks for 1000).
    pub page_size: Option<usize>,
}

pub struct Fake {
    pub base: String,
    pub state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spec() -> Value {
    serde_json::from_str(SPEC).expect("the OpenAPI subset parses")
}

/// The schema behind a `$ref` (or the node itself).
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &spec["components"]["schemas"][name]
        }
        None => node,
    }
}

/// The example resource of `schema` from the operation's example `example`, list key
/// `key` (or the whole example), every key checked against the schema.
fn example(
    spec: &Value,
    path: &str,
    method: &str,
    code: &str,
    name: &str,
    key: Option<&str>,
) -> Value {
    let ex = &spec["paths"][path][method]["responses"][code]["content"]["application/json"]["examples"]
        [name]["value"];
    let v = match key {
        Some(k) => ex[k][0].clone(),
        None => ex.clone(),
    };
    assert!(v.is_object(), "no example {name} for {method} {path}");
    v
}

fn schema_props(spec: &Value, schema: &str) -> Vec<String> {
    spec["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn check_keys(spec: &Value, schema: &str, v: &Value) {
    let props = schema_props(spec, schema);
    for k in v.as_object().unwrap().keys() {
        assert!(props.contains(k), "{k} is not a property of {schema}");
    }
}

pub fn rfc2822(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

impl Fake {
    pub fn start() -> Fake {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let (s2, st2) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            let spec = spec();
            for req in s2.incoming_requests() {
                serve(&spec, &st2, req);
            }
        });
        Fake {
            base: format!("http://127.0.0.1:{port}"),
            state,
            server,
            thread: Some(thread),
        }
    }

    /// The `[twilio]` keys that point calltrackd here (auth token credentials).
    pub fn twilio_keys(&self) -> String {
        format!(
            "account_sid = \"{ACCOUNT}\"\napi_base = \"{}\"\n",
            self.base
        )
    }

    /// Adds a number to the account, shaped like the description's example.
    pub fn add_number(&self, e164: &str, voice_url: &str, status_callback: &str) -> String {
        let spec = spec();
        let mut n = example(
            &spec,
            "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json",
            "get",
            "200",
            "readFull",
            Some("incoming_phone_numbers"),
        );
        let mut st = self.state.lock().unwrap();
        let sid = format!("PN{:032x}", st.numbers.len() + 1);
        let o = n.as_object_mut().unwrap();
        o.insert("sid".into(), json!(sid));
        o.insert("account_sid".into(), json!(ACCOUNT));
        o.insert("phone_number".into(), json!(e164));
        o.insert("friendly_name".into(), json!(e164));
        o.insert("voice_url".into(), json!(voice_url));
        o.insert("voice_method".into(), json!("GET"));
        o.insert("voice_fallback_url".into(), json!(""));
        o.insert("status_callback".into(), json!(status_callback));
        o.insert("status_callback_method".into(), json!("GET"));
        o.insert("voice_caller_id_lookup".into(), json!(false));
        o.insert("voice_application_sid".into(), json!(""));
        o.insert(
            "uri".into(),
            json!(format!(
                "/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{sid}.json"
            )),
        );
        check_keys(&spec, "api.v2010.account.incoming_phone_number", &n);
        st.numbers.push(n);
        sid
    }

    pub fn number(&self, e164: &str) -> Value {
        let st = self.state.lock().unwrap();
        st.numbers
            .iter()
            .find(|n| n["phone_number"] == e164)
            .cloned()
            .unwrap()
    }

    pub fn set_number_field(&self, e164: &str, key: &str, v: Value) {
        let mut st = self.state.lock().unwrap();
        let n = st
            .numbers
            .iter_mut()
            .find(|n| n["phone_number"] == e164)
            .unwrap();
        n[key] = v;
    }

    /// Adds a call (fields as in the Call resource), shaped like the example.
    #[allow(clippy::too_many_arguments)]
    pub fn add_call(
        &self,
        sid: &str,
        parent: Option<&str>,
        from: &str,
        to: &str,
        direction: &str,
        status: &str,
        start: i64,
        end: Option<i64>,
        duration: Option<i64>,
    ) {
        let spec = spec();
        let mut c = example(
            &spec,
            "/2010-04-01/Accounts/{AccountSid}/Calls.json",
            "get",
            "200",
            "readFullPage1",
            Some("calls"),
        );
        let o = c.as_object_mut().unwrap();
        o.insert("sid".into(), json!(sid));
        o.insert("account_sid".into(), json!(ACCOUNT));
        o.insert("parent_call_sid".into(), json!(parent));
        o.insert("from".into(), json!(from));
        o.insert("to".into(), json!(to));
        o.insert("direction".into(), json!(direction));
        o.insert("status".into(), json!(status));
        o.insert("start_time".into(), json!(rfc2822(start)));
        o.insert("end_time".into(), json!(end.map(rfc2822)));
        o.insert("duration".into(), json!(duration.map(|d| d.to_string())));
        o.insert("answered_by".into(), Value::Null);
        o.insert("caller_name".into(), Value::Null);
        o.insert("forwarded_from".into(), Value::Null);
        o.insert("group_sid".into(), Value::Null);
        o.insert(
            "uri".into(),
            json!(format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json")),
        );
        check_keys(&spec, "api.v2010.account.call", &c);
        self.state.lock().unwrap().calls.push(c);
    }

    pub fn fault(&self, status: u16, retry_after: Option<u64>) {
        self.state.lock().unwrap().faults.push_back(Fault {
            status,
            retry_after,
        });
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    pub fn messages(&self) -> Vec<Value> {
        self.state.lock().unwrap().messages.clone()
    }
}

fn twilio_error(status: u16, code: i64, message: &str) -> (u16, Value) {
    (
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

fn serve(spec: &Value, state: &Arc<Mutex<State>>, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_lowercase();
    let url = req.url().to_owned();
    let (path, qs) = url.split_once('?').unwrap_or((&url, ""));
    let query: Vec<(String, String)> = serde_urlencoded::from_str(qs).unwrap_or_default();
    let ct = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().to_owned())
        .unwrap_or_default();
    let auth = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_owned());
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
    let form: Vec<(String, String)> = if method == "post" {
        serde_urlencoded::from_str(&body).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut st = state.lock().unwrap();
    let (status, v, retry_after) = match st.faults.pop_front() {
        // A "fault" of 200: a proxy's error page where JSON should be.
        Some(f) if f.status == 200 => (200, Value::Null, None),
        Some(f) => {
            let (s, v) = twilio_error(
                f.status,
                if f.status == 429 { 20429 } else { 20500 },
                "fault",
            );
            (s, v, f.retry_after)
        }
        None => {
            let (s, v) = answer(
                spec,
                &mut st,
                &method,
                path,
                &query,
                &form,
                &ct,
                auth.as_deref(),
            );
            (s, v, None)
        }
    };
    st.seen.push(Seen {
        method: method.to_uppercase(),
        path: path.to_owned(),
        query,
        form,
        status,
    });
    drop(st);
    let text = if v.is_null() {
        "<html><body>502 Bad Gateway</body></html>".to_owned()
    } else {
        v.to_string()
    };
    let mut resp = tiny_http::Response::from_string(text)
        .with_status_code(status)
        .with_header(tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap());
    if let Some(s) = retry_after {
        resp =
            resp.with_header(tiny_http::Header::from_bytes("Retry-After", s.to_string()).unwrap());
    }
    let _ = req.respond(resp);
}

/// The description's path template that `path` matches, with its parameters.
fn route(spec: &Value, path: &str) -> Option<(String, Vec<(String, String)>)> {
    for tpl in spec["paths"].as_object().unwrap().keys() {
        let a: Vec<&str> = tpl.split('/').collect();
        let b: Vec<&str> = path.split('/').collect();
        if a.len() != b.len() {
            continue;
        }
        let mut params = Vec::new();
        let mut ok = true;
        for (x, y) in a.iter().zip(&b) {
            // `{Sid}.json` against `PN...json`
            if let Some(start) = x.find('{') {
                let end = x.find('}').unwrap();
                let (pre, post) = (&x[..start], &x[end + 1..]);
                if y.starts_with(pre) && y.ends_with(post) && y.len() > pre.len() + post.len() {
                    params.push((
                        x[start + 1..end].to_owned(),
                        y[pre.len()..y.len() - post.len()].to_owned(),
                    ));
                } else {
                    ok = false;
                }
            } else if x != y {
                ok = false;
            }
        }
        if ok {
            return Some((tpl.clone(), params));
        }
    }
    None
}

/// Checks a value against a parameter or property schema.
fn check_value(spec: &Value, schema: &Value, name: &str, v: &str) -> Result<(), String> {
    let s = resolve(spec, schema);
    if let Some(en) = s.get("enum").and_then(Value::as_array)
        && !en.iter().any(|e| e == v)
    {
        return Err(format!("{name}={v:?} is not one of {en:?}"));
    }
    match s.get("type").and_then(Value::as_str) {
        Some("integer") => {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("{name}={v:?} is not an integer"))?;
            if let Some(min) = s.get("minimum").and_then(Value::as_i64)
                && n < min
            {
                return Err(format!("{name}={n} is below {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_i64)
                && n > max
            {
                return Err(format!("{name}={n} is above {max}"));
            }
        }
        Some("boolean") if v != "true" && v != "false" => {
            return Err(format!("{name}={v:?} is not a boolean"));
        }
        _ => {}
    }
    if s.get("format").and_then(Value::as_str) == Some("uri")
        && !(v.starts_with("https://") || v.starts_with("http://") || v.is_empty())
    {
        return Err(format!("{name}={v:?} is not a URI"));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        // The only patterns used here: ^XX[0-9a-fA-F]{32}$
        if let Some(prefix) = p.strip_prefix('^').and_then(|r| r.get(..2))
            && p.ends_with("[0-9a-fA-F]{32}$")
            && !(v.len() == 34
                && v.starts_with(prefix)
                && v[2..].bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("{name}={v:?} does not match {p}"));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn answer(
    spec: &Value,
    st: &mut State,
    method: &str,
    path: &str,
    query: &[(String, String)],
    form: &[(String, String)],
    ct: &str,
    auth: Option<&str>,
) -> (u16, Value) {
    let Some((tpl, params)) = route(spec, path) else {
        st.violations
            .push(format!("{method} {path}: not a path of the description"));
        return twilio_error(404, 20404, "The requested resource was not found");
    };
    let Some(op) = spec["paths"][&tpl].get(method) else {
        st.violations
            .push(format!("{method} {tpl}: no such operation"));
        return twilio_error(405, 20004, "Method not allowed");
    };
    // Credentials: HTTP Basic, the account SID with its auth token, or an API key.
    let ok = auth
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|up| {
            up == format!("{ACCOUNT}:{AUTH_TOKEN}") || up == format!("{API_KEY}:{API_SECRET}")
        });
    if !ok {
        return twilio_error(401, 20003, "Authenticate");
    }
    // Path parameters, query parameters and form fields against the description.
    let declared: Vec<&Value> = op["parameters"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (name, v) in &params {
        match declared
            .iter()
            .find(|p| p["name"] == name.as_str() && p["in"] == "path")
        {
            Some(p) => {
                if let Err(e) = check_value(spec, &p["schema"], name, v) {
                    problems.push(e)
                }
            }
            None => problems.push(format!("path parameter {name} not declared")),
        }
    }
    for (name, v) in query {
        match declared
            .iter()
            .find(|p| p["name"] == name.as_str() && p["in"] == "query")
        {
            Some(p) => {
                if let Err(e) = check_value(spec, &p["schema"], name, v) {
                    problems.push(e)
                }
            }
            None => problems.push(format!("query parameter {name} is not one of {tpl}'s")),
        }
    }
    if let Some(rb) = op.get("requestBody") {
        if !ct.starts_with("application/x-www-form-urlencoded") {
            problems.push(format!("body is {ct:?}, not a form"));
        }
        let schema = &rb["content"]["application/x-www-form-urlencoded"]["schema"];
        for (name, v) in form {
            match schema["properties"].get(name) {
                Some(p) => {
                    if let Err(e) = check_value(spec, p, name, v) {
                        problems.push(e)
                    }
                }
                None => problems.push(format!("form field {name} is not one of {tpl}'s")),
            }
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            if !form.iter().any(|(k, _)| r == k.as_str()) {
                problems.push(format!("required form field {r} missing"));
            }
        }
    }
    if !problems.is_empty() {
        st.violations.push(format!(
            "{} {path}: {}",
            method.to_uppercase(),
            problems.join("; ")
        ));
        return twilio_error(400, 20001, &problems.join("; "));
    }
    let account = params
        .iter()
        .find(|(k, _)| k == "AccountSid" || (k == "Sid" && tpl.ends_with("Accounts/{Sid}.json")))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if account != ACCOUNT {
        return twilio_error(404, 20404, "The requested resource was not found");
    }
    let q = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    match (method, tpl.as_str()) {
        ("get", "/2010-04-01/Accounts/{Sid}.json") => {
            let mut a = example(spec, &tpl, "get", "200", "fetch", None);
            a["sid"] = json!(ACCOUNT);
            a["owner_account_sid"] = json!(ACCOUNT);
            a["status"] = json!("active");
            check_keys(spec, "api.v2010.account", &a);
            (200, a)
        }
        ("get", "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json") => {
            let items: Vec<Value> = st
                .numbers
                .iter()
                .filter(|n| q("PhoneNumber").is_none_or(|p| n["phone_number"] == p))
                .cloned()
                .collect();
            page(
                spec,
                &tpl,
                path,
                query,
                "incoming_phone_numbers",
                items,
                st.page_size,
            )
        }
        ("post", "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json") => {
            let sid = &params.iter().find(|(k, _)| k == "Sid").unwrap().1;
            let Some(n) = st.numbers.iter_mut().find(|n| n["sid"] == sid.as_str()) else {
                return twilio_error(404, 20404, "The requested resource was not found");
            };
            for (k, v) in form {
                // Form fields are the resource's properties in snake_case.
                let mut key = String::new();
                for (i, c) in k.chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        key.push('_');
                    }
                    key.push(c.to_ascii_lowercase());
                }
                let val = if key == "voice_caller_id_lookup" {
                    json!(v == "true")
                } else {
                    json!(v)
                };
                n[key.as_str()] = val;
            }
            check_keys(spec, "api.v2010.account.incoming_phone_number", n);
            (200, n.clone())
        }
        ("get", "/2010-04-01/Accounts/{AccountSid}/Calls.json") => {
            let day = |s: &str| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp())
                    .ok()
            };
            let start = |c: &Value| {
                chrono::DateTime::parse_from_rfc2822(c["start_time"].as_str().unwrap())
                    .unwrap()
                    .timestamp()
            };
            let items: Vec<Value> = st
                .calls
                .iter()
                .filter(|c| q("To").is_none_or(|v| c["to"] == v))
                .filter(|c| q("From").is_none_or(|v| c["from"] == v))
                .filter(|c| q("ParentCallSid").is_none_or(|v| c["parent_call_sid"] == v))
                .filter(|c| q("StartTime>").and_then(day).is_none_or(|d| start(c) >= d))
                .filter(|c| q("StartTime<").and_then(day).is_none_or(|d| start(c) < d))
                .cloned()
                .collect();
            page(spec, &tpl, path, query, "calls", items, st.page_size)
        }
        ("post", "/2010-04-01/Accounts/{AccountSid}/Messages.json") => {
            let f = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            if f("From").is_none() && f("MessagingServiceSid").is_none() {
                return twilio_error(
                    400,
                    21603,
                    "A 'From' or 'MessagingServiceSid' parameter is required",
                );
            }
            let mut m = example(spec, &tpl, "post", "201", "create", None);
            let sid = format!("SM{:032x}", st.messages.len() + 1);
            m["sid"] = json!(sid);
            m["account_sid"] = json!(ACCOUNT);
            m["to"] = json!(f("To"));
            m["from"] = json!(f("From"));
            m["body"] = json!(f("Body"));
            m["status"] = json!("queued");
            check_keys(spec, "api.v2010.account.message", &m);
            st.messages.push(m.clone());
            (201, m)
        }
        _ => {
            st.violations
                .push(format!("{method} {tpl}: not served by the fake"));
            twilio_error(404, 20404, "not served by the fake")
        }
    }
}

/// A page of `items` as the description's list responses are shaped.
fn page(
    spec: &Value,
    tpl: &str,
    path: &str,
    query: &[(String, String)],
    key: &str,
    items: Vec<Value>,
    cap: Option<usize>,
) -> (u16, Value) {
    let q = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let size: usize = q("PageSize").and_then(|s| s.parse().ok()).unwrap_or(50);
    let size = cap.map_or(size, |c| c.min(size));
    let page: usize = q("Page").and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunk: Vec<Value> = items.iter().skip(page * size).take(size).cloned().collect();
    let base: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "Page" && k != "PageToken" && k != "PageSize")
        .cloned()
        .collect();
    let uri = |p: usize, token: bool| {
        let mut qq = base.clone();
        qq.push(("PageSize".into(), size.to_string()));
        qq.push(("Page".into(), p.to_string()));
        if token {
            qq.push(("PageToken".into(), format!("PA{p}")));
        }
        format!("{path}?{}", serde_urlencoded::to_string(&qq).unwrap())
    };
    let more = (page + 1) * size < items.len();
    let schema =
        &spec["paths"][tpl]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    let mut out = Map::new();
    out.insert(key.into(), Value::Array(chunk));
    out.insert("first_page_uri".into(), json!(uri(0, false)));
    out.insert(
        "next_page_uri".into(),
        if more {
            json!(uri(page + 1, true))
        } else {
            Value::Null
        },
    );
    out.insert("previous_page_uri".into(), Value::Null);
    out.insert("page".into(), json!(page));
    out.insert("page_size".into(), json!(size));
    out.insert("start".into(), json!(page * size));
    out.insert(
        "end".into(),
        json!(page * size + size.min(items.len().saturating_sub(page * size))),
    );
    out.insert("uri".into(), json!(uri(page, page > 0)));
    for k in out.keys() {
        assert!(
            schema["properties"].get(k).is_some(),
            "{k} not in the list schema"
        );
    }
    (200, Value::Object(out))
}
