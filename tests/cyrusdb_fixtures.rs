//! The readers on databases captured from a real Cyrus 3.13 backupcyrusd
//! (`../shared/fixtures/wire`, see NOTES.md there).

mod common;

use std::path::PathBuf;

use mailvault::formats::cyrusdb::{Backend, CyrusDb};
use mailvault::formats::mailbox_name::NameConfig;
use mailvault::formats::seen_db::seen_records;
use mailvault::formats::subs_db::{subscriptions, SubsVersion};
use mailvault::formats::twoskip::Twoskip;

fn fixtures(test: &str) -> Option<PathBuf> {
    common::shared_fixtures_for(test)
}

/// The body of `DATA <item> <size> …` in a captured META response.
fn data_body(response: &[u8], item: &str) -> Vec<u8> {
    let head = format!("DATA {item} ");
    let start = response
        .windows(head.len())
        .position(|w| w == head.as_bytes())
        .unwrap_or_else(|| panic!("no DATA {item}"));
    let line_end = start + response[start..].iter().position(|&b| b == b'\n').unwrap();
    let line = std::str::from_utf8(&response[start..line_end]).unwrap();
    let size: usize = line.split(' ').nth(2).unwrap().parse().unwrap();
    response[line_end + 1..line_end + 1 + size].to_vec()
}

fn capture(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join("wire").join(name)).unwrap()
}

/// bob's seen db holds a record that was replaced in place (the old one is
/// still in the file, followed by BLANK filler); only the new one is live.
/// `cyr_dbtool … twoskip show` prints exactly this one line for the file.
#[test]
fn bobs_seen_db_yields_the_replacement_record_only() {
    let Some(dir) = fixtures("bobs_seen_db_yields_the_replacement_record_only") else {
        return;
    };
    let seen = data_body(&capture(&dir, "08-meta-data-bob-seen-sub.response"), "seen");
    assert_eq!(seen.len(), 640);
    let twoskip = Twoskip::parse(&seen).unwrap();
    assert_eq!(
        twoskip.check().unwrap(),
        5,
        "DUMMY, two RECORDs, two COMMITs"
    );
    let db = CyrusDb::from_bytes("bob seen", seen).unwrap();
    assert_eq!(db.backend(), Backend::Twoskip);
    let records = seen_records(&db).unwrap();
    assert_eq!(records.len(), 1);
    let (uniqueid, record) = &records[0];
    assert_eq!(uniqueid, "34d30f17-2781-4529-9c8b-d49e49fefcc6");
    assert_eq!(record.lastuid, 4);
    assert_eq!(
        record.seenuids, "3",
        "bob set \\Seen on alice's INBOX.Work uid 3"
    );
}

#[test]
fn captured_sub_files_decode_to_internal_names() {
    let Some(dir) = fixtures("captured_sub_files_decode_to_internal_names") else {
        return;
    };
    let cfg = NameConfig::default();
    let cases = [
        (
            "08-meta-data-bob-seen-sub.response",
            "bob",
            vec![
                "user.bob",
                "user.bob.Trips 2024",
                "user.bob.x",
                "user.bob.x.y",
            ],
        ),
        (
            "09-meta-data-carol.smith-sub.response",
            "carol.smith",
            vec!["user.carol^smith", "user.carol^smith.Notes"],
        ),
        (
            "06-meta-data-alice-seen-sub.response",
            "alice",
            vec![
                "user.alice",
                "user.alice.Old",
                "user.alice.Sent",
                "user.alice.Work",
                "user.alice.a.b",
            ],
        ),
    ];
    for (file, userid, expected) in cases {
        let sub = data_body(&capture(&dir, file), "sub");
        let db = CyrusDb::from_bytes(file, sub).unwrap();
        assert_eq!(db.backend(), Backend::Flat);
        let subs = subscriptions(&db, userid, &cfg).unwrap();
        assert_eq!(subs.version, SubsVersion::V3);
        assert_eq!(subs.folders, expected, "{file}");
    }
}
