//! Unit tests for `storage`.

use super::*;

#[test]
fn newer_schema_is_refused() {
    let dir = std::env::temp_dir().join(format!("ct-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("t.db");
    let _ = std::fs::remove_file(&db);
    drop(open_writer(&db).unwrap());
    let c = Connection::open(&db).unwrap();
    c.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(c);
    let e = open_writer(&db).unwrap_err().0;
    assert!(e.contains("newer than this calltrackd"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
