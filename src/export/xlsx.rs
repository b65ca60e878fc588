//! The workbook: one sheet `Calls`, typed cells, built in a temporary file.

use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::csv::local_naive;
use super::pager::Pager;
use super::{COLUMNS, ExportError, Filters, Settings, private_tempdir};

/// Writes the filtered calls as an XLSX workbook to `out`; the workbook writer's own
/// temporary files (unnamed) go into `tempdir`.
pub fn write_xlsx(
    db: &Path,
    filters: Filters,
    tz: Tz,
    out: &mut std::fs::File,
    tempdir: &Path,
) -> Result<u64, ExportError> {
    use rust_xlsxwriter::{Format as XFormat, Workbook};
    let xerr = ExportError::from;
    let mut pager = Pager::open(db, filters)?;
    let mut wb = Workbook::new();
    wb.set_tempdir(tempdir).map_err(xerr)?;
    let mut ws = wb.new_worksheet_with_constant_memory().map_err(xerr)?;
    ws.set_name("Calls").map_err(xerr)?;
    let bold = XFormat::new().set_bold();
    let when = XFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    for (c, name) in COLUMNS.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *name, &bold)
            .map_err(xerr)?;
    }
    let mut row: u32 = 0;
    loop {
        let page = pager.next_page()?;
        if page.is_empty() {
            break;
        }
        for r in page {
            row += 1;
            if row >= 1_048_576 {
                return Err(ExportError::TooManyRows);
            }
            let texts = [
                (0u16, &r.call_sid),
                (1, &r.user),
                (2, &r.tracking_number),
                (3, &r.source),
                (4, &r.caller),
                (5, &r.caller_name),
                (6, &r.caller_city),
                (7, &r.caller_state),
                (8, &r.direction),
                (9, &r.status),
                (21, &r.qualified_reason),
                (22, &r.recording_url),
                (23, &r.voicemail_url),
                (24, &r.captured_by),
            ];
            for (c, v) in texts {
                if !v.is_empty() {
                    ws.write_string(row, c, v.as_str()).map_err(xerr)?;
                }
            }
            if let Some(a) = r.answered {
                ws.write_boolean(row, 10, a).map_err(xerr)?;
            }
            if let Some(q) = r.qualified {
                ws.write_boolean(row, 11, q).map_err(xerr)?;
            }
            if let Some(d) = r.duration_seconds {
                ws.write_number(row, 12, d as f64).map_err(xerr)?;
            }
            if let Some(t) = r.talk_seconds {
                ws.write_number(row, 13, t as f64).map_err(xerr)?;
            }
            let utc = |t: i64| {
                DateTime::<Utc>::from_timestamp(t, 0)
                    .unwrap_or_default()
                    .naive_utc()
            };
            ws.write_datetime_with_format(row, 14, utc(r.started_at), &when)
                .map_err(xerr)?;
            if let Some(e) = r.ended_at {
                ws.write_datetime_with_format(row, 15, utc(e), &when)
                    .map_err(xerr)?;
            }
            ws.write_datetime_with_format(row, 16, local_naive(r.started_at, tz), &when)
                .map_err(xerr)?;
            if let Some(o) = r.outcome {
                ws.write_string(row, 17, o.as_str()).map_err(xerr)?;
            }
            if let Some(s) = r.ring_seconds {
                ws.write_number(row, 18, s as f64).map_err(xerr)?;
            }
            if let Some(f) = r.first_time_caller {
                ws.write_boolean(row, 19, f).map_err(xerr)?;
            }
            if let Some(n) = r.prior_calls {
                ws.write_number(row, 20, n as f64).map_err(xerr)?;
            }
        }
    }
    ws.set_freeze_panes(1, 0).map_err(xerr)?;
    ws.autofilter(0, 0, row, (COLUMNS.len() - 1) as u16)
        .map_err(xerr)?;
    for (c, w) in [
        (0u16, 36.0),
        (1, 18.0),
        (2, 15.0),
        (3, 16.0),
        (4, 15.0),
        (5, 18.0),
        (14, 20.0),
        (15, 20.0),
        (16, 20.0),
        (21, 28.0),
    ] {
        ws.set_column_width(c, w).map_err(xerr)?;
    }
    wb.push_worksheet(ws);
    wb.save_to_writer(&mut *out).map_err(xerr)?;
    Ok(row as u64)
}

/// Builds the workbook in an unnamed temporary file and returns it open, at its start.
/// One workbook is built at a time: each takes a core for a while, and the other core
/// stays free for webhooks.
pub fn xlsx_tempfile(s: &Settings, filters: Filters) -> Result<std::fs::File, ExportError> {
    use std::io::{Seek, SeekFrom};
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = private_tempdir(&s.db_path);
    let mut file = tempfile::tempfile_in(&dir).map_err(|e| {
        ExportError::io(
            &format!("cannot create a temporary file in {}", dir.display()),
            e,
        )
    })?;
    write_xlsx(&s.db_path, filters, s.timezone, &mut file, &dir)?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ExportError::io("cannot read the workbook back", e))?;
    Ok(file)
}
