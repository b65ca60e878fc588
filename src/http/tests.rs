use super::{Method, Request, Response, reason};

#[test]
fn request_accessors() {
    let r = Request::new(
        "POST",
        "/call-tracking/webhook?a=1",
        vec![("content-type".into(), "text/plain".into())],
        Ok(b"x".to_vec()),
    );
    assert_eq!(*r.method(), Method::Post);
    assert_eq!(r.path(), "/call-tracking/webhook");
    assert_eq!(r.query(), Some("a=1"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.body().unwrap(), b"x");
}

#[test]
fn reason_phrases_for_every_status_the_layer_sends() {
    for s in [100, 400, 408, 411, 413, 417, 431, 500, 505] {
        assert!(!reason(s).is_empty(), "{s}");
    }
    let r = Response::text(200, "ok").with_header("X-A", "b");
    assert_eq!(r.header("x-a"), Some("b"));
}
