//! Rows in pages of [`PAGE`], each page its own short read transaction.

use std::path::Path;

use rusqlite::Connection;

use super::filters::page_sql;
use super::{Filters, PAGE};
use crate::calls::Call;
use crate::storage::{self, StorageError};

/// Pages through the filtered calls, each page in its own read transaction.
pub(super) struct Pager {
    conn: Connection,
    filters: Filters,
    after: Option<(i64, String)>,
    done: bool,
}

impl Pager {
    pub(super) fn open(db: &Path, filters: Filters) -> Result<Pager, StorageError> {
        let conn = storage::open_calls_reader(db)?;
        // No BEGIN: each page's statement is its own read transaction, ended when its
        // rows are collected, so no snapshot outlives a page.
        Ok(Pager {
            conn,
            filters,
            after: None,
            done: false,
        })
    }

    pub(super) fn next_page(&mut self) -> Result<Vec<Call>, StorageError> {
        if self.done {
            return Ok(Vec::new());
        }
        let f = &self.filters;
        let mut stmt = self
            .conn
            .prepare_cached(&page_sql(f, self.after.is_some()))?;
        let limit = PAGE as i64;
        let mut named: Vec<(&str, &dyn rusqlite::ToSql)> = vec![(":limit", &limit)];
        if let Some(v) = &f.from {
            named.push((":from", v));
        }
        if let Some(v) = &f.to {
            named.push((":to", v));
        }
        if let Some(v) = &f.user {
            named.push((":user", v));
        }
        if let Some(v) = &f.source {
            named.push((":source", v));
        }
        if let Some(v) = &f.qualified {
            named.push((":qualified", v));
        }
        if let Some(v) = &f.first_time {
            named.push((":first_time", v));
        }
        if let Some((t, sid)) = &self.after {
            named.push((":after_t", t));
            named.push((":after_sid", sid));
        }
        let rows = stmt.query_map(named.as_slice(), storage::call_from_row)?;
        let page: Vec<Call> = rows.collect::<Result<_, _>>()?;
        if page.len() < PAGE {
            self.done = true;
        }
        if let Some(last) = page.last() {
            self.after = Some((last.started_at, last.call_sid.clone()));
        }
        Ok(page)
    }
}
