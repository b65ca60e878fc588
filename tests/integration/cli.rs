//! The command line: exit codes, messages, and that secrets never show.

use std::process::Command;

use crate::support::*;

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_config_summarises_without_secrets() {
    let env = Env::new(&base_config("public_url = \"https://calls.example.com\"\n"));
    let o = env.run(&["check-config", "--config", env.config().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("is valid"), "{out}");
    assert!(out.contains("2 numbers, 2 users"), "{out}");
    assert!(
        out.contains(TRACKING) && out.contains("acme-plumbing"),
        "{out}"
    );
    assert!(out.contains("calls.db"), "{out}");
    assert!(out.contains("127.0.0.1:0"), "{out}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN) && !out.contains(EXPORT_TOKEN));

    let o = env.run(&[
        "check-config",
        "--config",
        env.config().to_str().unwrap(),
        "--fallback-twiml",
    ]);
    let (out, _) = text(&o);
    assert!(
        out.contains(&format!(
            "<Response><Dial timeout=\"18\" answerOnBridge=\"true\"><Number>{SHOP}</Number></Dial></Response>"
        )),
        "{out}"
    );
    assert!(
        !out.contains(&format!("# {TRACKING_NO_FORWARD}")),
        "numbers without forward_to get no fallback"
    );
}

#[test]
fn config_errors_exit_2_naming_file_and_key() {
    let cases = [
        ("[server]\nlistn = \"x\"\n", "`listn`"),
        (
            "[[numbers]]\nnumber = \"555-1212\"\nuser = \"a\"\n",
            "`number`",
        ),
        ("[server]\nlisten = \"nowhere\"\n", "`listen`"),
        ("[export]\ntimezone = \"Nowhere/City\"\n", "`timezone`"),
        (
            "[server]\npublic_url = \"calls.example.com\"\n",
            "`public_url`",
        ),
    ];
    for (bad, key) in cases {
        let env = Env::new(&format!("[twilio]\nauth_token = \"t\"\n{bad}"));
        let cfg = env.config();
        for cmd in ["check-config", "serve"] {
            let o = env.run(&[cmd, "--config", cfg.to_str().unwrap()]);
            let (_, err) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd} {bad}: {err}");
            assert!(
                err.contains(cfg.to_str().unwrap()) && err.contains(key),
                "{cmd} {bad}: {err}"
            );
            assert!(
                !err.contains("panicked") && err.lines().count() == 1,
                "{err}"
            );
        }
    }
    // Secrets: missing, empty, from an unreadable file.
    let env = Env::new("[twilio]\nauth_token_file = \"missing-token\"\n");
    let o = env.run(&["check-config", "--config", env.config().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("auth_token_file"));
    // No token at all: both refuse.
    let env = Env::new("[twilio]\n");
    for cmd in ["serve", "check-config"] {
        let o = env.run(&[cmd, "--config", env.config().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(text(&o).1.contains("no auth token"), "{cmd}");
    }
    // The packaged layout: the token in /etc/calltrackd/twilio-auth-token, found by
    // pointing $CREDENTIALS_DIRECTORY at that folder, as systemd's LoadCredential does.
    std::fs::write(env.dir.path().join("twilio-auth-token"), "tok\n").unwrap();
    let o = Command::new(bin())
        .args(["check-config", "--config", env.config().to_str().unwrap()])
        .env("CREDENTIALS_DIRECTORY", env.dir.path())
        .env_remove("TWILIO_AUTH_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    assert!(text(&o).0.contains("systemd credential twilio-auth-token"));
    // No such config file.
    let o = env.run(&["check-config", "--config", "/nonexistent/calltrackd.toml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn token_from_file_and_env_and_permission_warning() {
    let env = Env::new("[twilio]\nauth_token_file = \"tok\"\n");
    std::fs::write(env.dir.path().join("tok"), "from-file-token\n").unwrap();
    let cfg = env.config();
    let o = env.run(&["check-config", "--config", cfg.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("from file"), "{out}");
    assert!(
        err.contains("readable by group or others"),
        "token file is 0644: {err}"
    );
    assert!(!out.contains("from-file-token") && !err.contains("from-file-token"));

    // $TWILIO_AUTH_TOKEN wins over the file.
    let o = Command::new(bin())
        .args(["check-config", "--config", cfg.to_str().unwrap()])
        .env("TWILIO_AUTH_TOKEN", "env-token")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("environment variable TWILIO_AUTH_TOKEN"));

    // An inline secret in a group-readable config gets a warning.
    let env = Env::new("[twilio]\nauth_token = \"inline-secret\"\n");
    let mut p = std::fs::metadata(env.config()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o640);
    std::fs::set_permissions(env.config(), p).unwrap();
    let o = env.run(&["check-config", "--config", env.config().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(
        err.contains("holds a secret and is readable by group or others"),
        "{err}"
    );
    assert!(!out.contains("inline-secret") && !err.contains("inline-secret"));
}

const COMMANDS: [&str; 6] = [
    "serve",
    "check-config",
    "export",
    "share-link",
    "backup",
    "sign",
];

#[test]
fn help_and_version() {
    let o = Command::new(bin()).arg("--help").output().unwrap();
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    for cmd in COMMANDS {
        assert!(out.contains(cmd), "{out}");
    }
    for cmd in COMMANDS {
        let o = Command::new(bin())
            .args([cmd, "--help"])
            .env("TWILIO_AUTH_TOKEN", "secret-in-env")
            .output()
            .unwrap();
        let (out, _) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{cmd}");
        assert!(out.contains("--config"), "{cmd}: {out}");
        assert!(!out.contains("secret-in-env"));
    }
    let o = Command::new(bin()).arg("--version").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).0.starts_with("calltrackd "));
    let o = Command::new(bin()).arg("frobnicate").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(bin()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn sign_matches_twilio_and_reads_no_config_with_env_token() {
    let url = "https://calls.example.com/call-tracking/webhook?a=1";
    let o = Command::new(bin())
        .args([
            "sign",
            "--config",
            "/nonexistent.toml",
            url,
            "CallSid=CA1",
            "From=+14155550100",
            "Body=a=b",
            "Digits=1",
            "Digits=2",
        ])
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let expected = sign(
        TOKEN,
        url,
        &[
            ("CallSid", "CA1"),
            ("From", "+14155550100"),
            ("Body", "a=b"),
            ("Digits", "1"),
            ("Digits", "2"),
        ],
    );
    assert_eq!(out.trim(), expected);

    // The docs example, token from the config file.
    let env = Env::new("[twilio]\nauth_token = \"12345\"\n");
    let o = env.run(&[
        "sign",
        "--config",
        env.config().to_str().unwrap(),
        "https://example.com/myapp.php?foo=1&bar=2",
        "CallSid=CA1234567890ABCDE",
        "Caller=+14158675310",
        "Digits=1234",
        "From=+14158675310",
        "To=+18005551212",
    ]);
    assert_eq!(text(&o).0.trim(), "L/OH5YylLD5NRKLltdqwSvS0BnU=");

    let o = env.run(&[
        "sign",
        "--config",
        env.config().to_str().unwrap(),
        url,
        "NoEquals",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("NAME=VALUE"));
}

#[test]
fn runtime_failures_exit_1() {
    // Port in use.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let env = Env::new(&base_config("").replace("127.0.0.1:0", &format!("127.0.0.1:{port}")));
    let o = env.run(&["serve", "--config", env.config().to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    drop(held);
    // Database folder missing.
    let env = Env::new(
        &base_config("").replace("path = \"calls.db\"", "path = \"no/such/dir/calls.db\""),
    );
    let o = env.run(&["serve", "--config", env.config().to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot open database"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn an_unknown_log_level_is_an_error_not_info() {
    let env = Env::new(&base_config(""));
    let o = Command::new(bin())
        .args(["serve", "--config", env.config().to_str().unwrap()])
        .env("CALLTRACKD_LOG", "verbose")
        .env_remove("TWILIO_AUTH_TOKEN")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CALLTRACKD_LOG") && err.contains("verbose"),
        "{err}"
    );
}

#[test]
fn a_fresh_database_logs_one_line_and_sighup_names_what_it_did_not_apply() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    assert!(d.wait_log("created (schema", std::time::Duration::from_secs(10)));
    let log = d.log_text();
    assert_eq!(log.matches("created (schema").count(), 1, "{log}");
    assert!(!log.contains("migrated"), "{log}");
    // A changed listener and export token cannot apply on SIGHUP: named, values not shown.
    env.write_config(
        &base_config("max_connections = 64\n").replace(EXPORT_TOKEN, "another-export-token-0000"),
    );
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(
            "not applied until calltrackd restarts: [server] max_connections, [export] token",
            std::time::Duration::from_secs(10)
        ),
        "{}",
        d.log_text()
    );
    assert!(!d.log_text().contains("another-export-token"));
}

#[test]
fn share_link_works_with_the_example_config_and_an_installed_token_file() {
    // The shipped example config (no public_url): a link to the local listener.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let env = Env::new(&base_config(""));
    let o = env.run(&["share-link", "--config", example.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.starts_with("http://127.0.0.1:8080/calls.csv?"), "{out}");
    assert!(err.contains("public_url"), "{err}");

    // Installed layout: no token in the config, the token in export-token beside it (the
    // file the packaged unit loads as a credential). The link it makes works.
    let cfg = base_config("").replace(&format!("token = \"{EXPORT_TOKEN}\"\n"), "");
    let env = Env::new(&cfg);
    let o = env.run(&["share-link", "--config", env.config().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "no token anywhere: usage error");
    assert!(text(&o).1.contains("export-token"), "{}", text(&o).1);
    std::fs::write(
        env.dir.path().join("export-token"),
        format!("{EXPORT_TOKEN}\n"),
    )
    .unwrap();
    let o = env.run(&["share-link", "--config", env.config().to_str().unwrap()]);
    let (link, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let d = Daemon::start(&env, vec![("CALLTRACKD_EXPORT_TOKEN", EXPORT_TOKEN.into())]);
    let path = link.trim().splitn(4, '/').nth(3).unwrap();
    let r = get(d.addr, &format!("/{path}"), &[]);
    assert_eq!(r.status, 200, "{link}");
}
