//! Unit tests for `config`.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml", Path::new("/etc/ct"), &Env::default())
}

const MIN: &str = "[twilio]\nauth_token = \"abc\"\n";

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MIN).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.workers, 8);
    assert_eq!(c.server.max_body_bytes, 65536);
    assert_eq!(c.rules.qualify, crate::config::Qualify::default());
    assert_eq!(c.storage_path, PathBuf::from(DEFAULT_DB_PATH));
    assert!(c.export.token.is_none());
    assert_eq!(c.export.timezone, chrono_tz::UTC);
}

#[test]
fn unknown_key_names_file_line_table_and_key() {
    let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("test.toml: line 3 in [server]:"), "{e}");
    assert!(e.contains("`listn`"), "{e}");
    assert!(e.contains("remove that key"), "{e}");
}

#[test]
fn numbers_are_validated() {
    let base = format!("{MIN}[[numbers]]\nnumber = \"+18005551212\"\nuser = \"a\"\n");
    assert!(parse(&base).is_ok());
    let e = parse(&format!(
        "{MIN}[[numbers]]\nnumber = \"8005551212\"\nuser = \"a\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("not E.164") && e.contains("`number`"), "{e}");
    let e = parse(&format!(
        "{base}[[numbers]]\nnumber = \"+18005551212\"\nuser = \"b\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("listed twice"), "{e}");
    let e = parse(&format!("{base}forward_to = \"555\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`forward_to`"), "{e}");
    let e = parse(&format!("{MIN}[[numbers]]\nnumber = \"+18005551212\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no `user`"), "{e}");
}

#[test]
fn e164() {
    assert!(is_e164("+18005551212"));
    assert!(is_e164("+442071838750"));
    assert!(!is_e164("18005551212"));
    assert!(!is_e164("+0800"));
    assert!(!is_e164("+1 800 555"));
    assert!(!is_e164("+1234567890123456"));
    assert!(!is_e164("+"));
}

#[test]
fn secrets_rules() {
    let e = parse("[twilio]\nauth_token = \"\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`auth_token` is empty"), "{e}");
    let e = parse("").unwrap_err().to_string();
    assert!(e.contains("no auth token"), "{e}");
    let e = parse("[twilio]\nauth_token = \"a\"\nauth_token_file = \"/x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("both"), "{e}");
    let e = parse("[twilio]\nauth_token_file = \"/nonexistent/tok\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be read"), "{e}");
    let e = parse(&format!("{MIN}[export]\ntoken = \" \"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[export] `token` is empty"), "{e}");
}

#[test]
fn env_token_wins_and_empty_env_is_an_error() {
    let env = Env {
        twilio_auth_token: Some("fromenv".into()),
        ..Env::default()
    };
    let c = Config::parse(MIN, "t", Path::new("."), &env).unwrap();
    assert_eq!(c.auth_tokens[0].expose(), "fromenv");
    let env = Env {
        twilio_auth_token: Some("".into()),
        ..Env::default()
    };
    assert!(Config::parse(MIN, "t", Path::new("."), &env).is_err());
}

#[test]
fn public_url_forms() {
    assert_eq!(
        validate_public_url("https://a.example.com/").unwrap(),
        "https://a.example.com"
    );
    assert_eq!(
        validate_public_url("http://a:8080/pre/fix").unwrap(),
        "http://a:8080/pre/fix"
    );
    assert!(validate_public_url("https://[::1]:8443").is_ok());
    assert!(validate_public_url("ftp://a").is_err());
    assert!(validate_public_url("https://").is_err());
    assert!(validate_public_url("https://a?x=1").is_err());
    assert!(validate_public_url("https://u:p@a").is_err());
    assert!(validate_public_url("https://a:99999").is_err());
    assert!(validate_public_url("https://a b").is_err());
}

#[test]
fn bad_listen_and_timezone() {
    let e = parse(&format!("{MIN}[server]\nlisten = \"localhost\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`listen`"), "{e}");
    let e = parse(&format!("{MIN}[export]\ntimezone = \"Mars/Base\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`timezone`"), "{e}");
}

#[test]
fn relative_storage_resolves_against_config_folder() {
    let c = parse(&format!("{MIN}[storage]\npath = \"calls.db\"\n")).unwrap();
    assert_eq!(c.storage_path, PathBuf::from("/etc/ct/calls.db"));
}

#[test]
fn summary_has_no_secret() {
    let c = parse("[twilio]\nauth_token = \"supersecret1\"\n[export]\ntoken = \"supersecret2\"\n")
        .unwrap();
    let s = c.summary();
    assert!(!s.contains("supersecret"), "{s}");
    assert!(!format!("{c:?}").contains("supersecret"));
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let e = parse(
        "[server]\nworkers = 0\nmax_body_bytes = 5\n[twilio]\nauth_token = \"t\"\n[export]\ntimezone = \"Mars/Base\"\n[[numbers]]\nnumber = \"18005551212\"\nuser = \"x\"\n[[numbers]]\nnumber = \"+18005551213\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("5 problems"), "{e}");
    for key in [
        "`workers`",
        "`max_body_bytes`",
        "`timezone`",
        "not E.164",
        "no `user`",
    ] {
        assert!(e.contains(key), "{key} missing from:\n{e}");
    }
}

#[test]
fn a_misspelled_table_is_named_as_a_table() {
    let e = parse("[twilio]\nauth_token = \"t\"\n[[number]]\nnumber = \"+18005551212\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown table `number`") && e.contains("Did you mean [[numbers]]?"),
        "{e}"
    );
}

#[test]
fn the_summary_counts_in_singular_and_plural() {
    let c = parse(
        "[twilio]\nauth_token = \"t\"\n[[numbers]]\nnumber = \"+18005551212\"\nuser = \"x\"\n",
    )
    .unwrap();
    assert!(
        c.summary().contains("1 number, 1 user\n"),
        "{}",
        c.summary()
    );
}

#[test]
fn range_limits_are_enforced_at_both_ends() {
    let with = |extra: &str| {
        let numbers = "[[numbers]]\nnumber = \"+18005551212\"\nuser = \"u\"\n";
        let text = format!("[twilio]\nauth_token = \"t\"\n{extra}\n{numbers}");
        parse(&text)
    };
    let server = |k: &str, v: i64| with(&format!("[server]\n{k} = {v}\n"));
    for (key, low, high) in [
        ("workers", 1, 1024),
        ("max_body_bytes", 1024, 67_108_864),
        ("max_connections", 16, 4096),
    ] {
        assert!(server(key, low).is_ok(), "{key} = {low}");
        assert!(server(key, high).is_ok(), "{key} = {high}");
        for bad in [low - 1, high + 1] {
            let e = server(key, bad).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("out of range"), "{e}");
        }
    }
    let qualify = |v: i64| with(&format!("[qualify]\nmin_duration_seconds = {v}\n"));
    assert!(qualify(0).is_ok() && qualify(86_400).is_ok());
    assert!(qualify(-1).is_err() && qualify(86_401).is_err());
    let ring = |v: i64| {
        parse(&format!(
            "[twilio]\nauth_token = \"t\"\n[[numbers]]\nnumber = \"+18005551212\"\nuser = \"u\"\nring_timeout_seconds = {v}\n"
        ))
    };
    assert!(ring(5).is_ok() && ring(600).is_ok());
    assert!(ring(4).is_err() && ring(601).is_err());
}
