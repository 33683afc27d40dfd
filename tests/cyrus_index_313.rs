//! Every folder of the real Cyrus 3.13 spool fixture (index minor version 20):
//! each header field and each record decodes to what Cyrus's own tools
//! reported in `EXPECTED.json`, and writing it back gives the same bytes.

mod common;

use std::path::{Path, PathBuf};

use mailvault::formats::cyrus_header::{CyrusHeader, HeaderForm, MAGIC};
use mailvault::formats::cyrus_index::{
    index_to_json, parse_index, write_index, IndexHeader, IndexReader, IndexRecord,
    INTERNAL_FLAG_NAMES, SYSTEM_FLAG_NAMES,
};
use mailvault::formats::Guid;
use serde_json::Value;

fn spool(test: &str) -> Option<PathBuf> {
    common::shared_fixtures_for(test).map(|dir| dir.join("spool-3.13"))
}

macro_rules! spool_or_skip {
    ($test:expr) => {
        match spool($test) {
            Some(dir) => dir,
            None => return,
        }
    };
}

fn expected(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("EXPECTED.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn folders(dir: &Path) -> Vec<(String, Value)> {
    let all = expected(dir);
    let folders = all["folders"].as_object().unwrap();
    assert!(
        folders.len() >= 6,
        "EXPECTED.json lists {} folders",
        folders.len()
    );
    folders
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn read(dir: &Path, folder: &Value, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(folder["dir"].as_str().unwrap()).join(file)).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Each `Cyrus::IndexFile` header name, as our field.
fn header_value(h: &IndexHeader, perl_name: &str) -> u64 {
    match perl_name {
        "Answered" => h.answered.into(),
        "ChangesEpoch" => h.changes_epoch.0,
        "CreatedModseq" => h.createdmodseq,
        "Deleted" => h.deleted.into(),
        "DeletedModseq" => h.deletedmodseq,
        "Exists" => h.exists.into(),
        "FirstExpunged" => h.first_expunged.0,
        "Flagged" => h.flagged.into(),
        "Format" => h.format.into(),
        "Generation" => h.generation_no.into(),
        "HeaderCrc" => h.header_crc.into(),
        "HeaderFileCRC" => h.header_file_crc.into(),
        "HighestModseq" => h.highestmodseq,
        "LastAppenddate" => h.last_appenddate.0,
        "LastCleanup" => h.last_repack_time.0,
        "LastUid" => h.last_uid.into(),
        "LeakedCache" => h.leaked_cache_records.into(),
        "MinorVersion" => h.minor_version.into(),
        "NumRecords" => h.num_records.into(),
        "Options" => h.options.into(),
        "Pop3LastLogin" => h.pop3_last_login.0,
        "Pop3ShowAfter" => h.pop3_show_after.0,
        "QuotaAnnotUsed" => h.quota_annot_used,
        "QuotaDeletedUsed" => h.quota_deleted_used,
        "QuotaExpungedUsed" => h.quota_expunged_used,
        "QuotaUsed" => h.quota_mailbox_used,
        "RecentTime" => h.recenttime.0,
        "RecentUid" => h.recentuid.into(),
        "RecordSize" => h.record_size.into(),
        "StartOffset" => h.start_offset.into(),
        "SyncCRCsAnnot" => h.synccrcs_annot.into(),
        "SyncCRCsBasic" => h.synccrcs_basic.into(),
        "UidValidity" => h.uidvalidity.into(),
        "Unseen" => h.unseen.into(),
        other => panic!("EXPECTED.json has header field {other} that this test does not check"),
    }
}

/// `Options` is written as a 32-digit binary string.
fn expected_header_value(name: &str, v: &Value) -> u64 {
    match v.as_str() {
        Some(bits) if name == "Options" => u64::from_str_radix(bits, 2).unwrap(),
        _ => u(v),
    }
}

#[test]
fn every_header_field_matches_cyrus() {
    let dir = spool_or_skip!("every_header_field_matches_cyrus");
    for (name, folder) in folders(&dir) {
        let (h, _) = parse_index(&read(&dir, &folder, "cyrus.index")).unwrap();
        for (field, want) in folder["index_header"].as_object().unwrap() {
            let want = expected_header_value(field, want);
            assert_eq!(header_value(&h, field), want, "{name}: header {field}");
        }
        assert_eq!(
            u64::from(h.uidvalidity),
            u(&folder["uidvalidity"]),
            "{name}"
        );
        assert_eq!(u64::from(h.last_uid), u(&folder["last_uid"]), "{name}");
        assert_eq!(u64::from(h.exists), u(&folder["exists"]), "{name}");
        assert_eq!(h.highestmodseq, u(&folder["highestmodseq"]), "{name}");
        assert_eq!(
            u64::from(h.num_records),
            u(&folder["num_records"]),
            "{name}"
        );
        assert_eq!(
            u64::from(h.minor_version),
            u(&folder["minor_version"]),
            "{name}"
        );
        let header_file = read(&dir, &folder, "cyrus.header");
        assert_eq!(h.header_file_crc, crc32fast::hash(&header_file), "{name}");
    }
}

fn names_of(bits: u32, table: &[(u32, &str)]) -> Vec<String> {
    table
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn check_record(folder: &str, r: &IndexRecord, want: &Value, header: &CyrusHeader) {
    let at = format!("{folder} uid {}", r.uid);
    assert_eq!(u64::from(r.uid), u(&want["uid"]), "{at}");
    assert_eq!(r.is_expunged(), want["expunged"].as_bool().unwrap(), "{at}");
    assert_eq!(r.internaldate.0, u(&want["internaldate_raw_ns"]), "{at}");
    assert_eq!(r.internaldate.secs(), u(&want["internaldate_sec"]), "{at}");
    assert_eq!(
        u64::from(r.internaldate.subsec_nanos()),
        u(&want["internaldate_nsec"]),
        "{at}"
    );
    assert_eq!(r.size, u(&want["size"]), "{at}");
    let raw = u64::from(r.system_flags | r.internal_flags);
    assert_eq!(raw, u(&want["system_flags_raw"]), "{at}");
    assert_eq!(
        names_of(r.system_flags, &SYSTEM_FLAG_NAMES),
        strings(&want["system_flags"]),
        "{at}"
    );
    assert_eq!(
        names_of(r.internal_flags, &INTERNAL_FLAG_NAMES),
        strings(&want["internal_flags"]),
        "{at}"
    );
    let bits: Vec<u64> = r.user_flag_bits().map(|b| b as u64).collect();
    let want_bits: Vec<u64> = want["keyword_bits"]
        .as_array()
        .unwrap()
        .iter()
        .map(u)
        .collect();
    assert_eq!(bits, want_bits, "{at}");
    let keywords: Vec<&str> = r.keywords(&header.user_flags).collect();
    assert_eq!(keywords, strings(&want["keywords"]), "{at}");
    assert_eq!(r.guid.to_hex(), want["guid"].as_str().unwrap(), "{at}");
    assert_eq!(r.modseq, u(&want["modseq"]), "{at}");
    assert_eq!(r.createdmodseq, u(&want["createdmodseq"]), "{at}");
    assert_eq!(r.sentdate.0, u(&want["sentdate_raw_ns"]), "{at}");
    assert_eq!(r.gmtime.0, u(&want["gmtime_raw_ns"]), "{at}");
    assert_eq!(r.savedate.0, u(&want["savedate_raw_ns"]), "{at}");
    assert_eq!(r.last_updated.0, u(&want["last_updated_raw_ns"]), "{at}");
    assert_eq!(u64::from(r.header_size), u(&want["header_size"]), "{at}");
    assert_eq!(
        u64::from(r.cache_version),
        u(&want["cache_version"]),
        "{at}"
    );
    assert_eq!(
        format!("{:016x}", r.cid),
        want["cid"].as_str().unwrap(),
        "{at}"
    );
    assert_eq!(
        format!("{:016x}", r.basecid),
        want["basecid"].as_str().unwrap(),
        "{at}"
    );
}

#[test]
fn every_record_matches_cyrus_including_expunged_ones() {
    let dir = spool_or_skip!("every_record_matches_cyrus_including_expunged_ones");
    for (name, folder) in folders(&dir) {
        let header = CyrusHeader::parse(&read(&dir, &folder, "cyrus.header")).unwrap();
        let index = read(&dir, &folder, "cyrus.index");
        let records: Vec<IndexRecord> = IndexReader::new(&index[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want = folder["records"].as_array().unwrap();
        assert_eq!(records.len(), want.len(), "{name}");
        for (r, w) in records.iter().zip(want) {
            check_record(&name, r, w, &header);
        }
    }
}

#[test]
fn the_guid_is_the_sha1_of_each_message_file_present() {
    let dir = spool_or_skip!("the_guid_is_the_sha1_of_each_message_file_present");
    let mut checked = 0;
    for (_, folder) in folders(&dir) {
        let (_, records) = parse_index(&read(&dir, &folder, "cyrus.index")).unwrap();
        for r in &records {
            let path = dir
                .join(folder["dir"].as_str().unwrap())
                .join(format!("{}.", r.uid));
            if let Ok(bytes) = std::fs::read(&path) {
                assert_eq!(r.guid, Guid::of(&bytes), "{}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} message files found");
}

#[test]
fn writing_back_each_index_reproduces_the_file_byte_for_byte() {
    let dir = spool_or_skip!("writing_back_each_index_reproduces_the_file_byte_for_byte");
    for (name, folder) in folders(&dir) {
        let index = read(&dir, &folder, "cyrus.index");
        assert_eq!(
            Guid::of(&index).to_hex(),
            folder["file_sha1"]["cyrus.index"].as_str().unwrap(),
            "{name}: fixture changed"
        );
        let (h, records) = parse_index(&index).unwrap();
        assert_eq!(write_index(&h, &records).unwrap(), index, "{name}");
    }
}

#[test]
fn each_cyrus_header_decodes_and_writes_back_identically() {
    let dir = spool_or_skip!("each_cyrus_header_decodes_and_writes_back_identically");
    for (name, folder) in folders(&dir) {
        let file = read(&dir, &folder, "cyrus.header");
        let mut expected_file = MAGIC.to_vec();
        expected_file.extend_from_slice(folder["cyrus_header_dlist"].as_str().unwrap().as_bytes());
        expected_file.push(b'\n');
        assert_eq!(file, expected_file, "{name}: file vs EXPECTED.json");

        let h = CyrusHeader::parse(&file).unwrap();
        assert_eq!(h.form, HeaderForm::Dlist);
        assert_eq!(h.uniqueid, folder["uniqueid"].as_str().unwrap(), "{name}");
        assert_eq!(h.name.as_deref(), folder["intname"].as_str(), "{name}");
        assert_eq!(h.jmapid.as_deref(), folder["jmapid"].as_str(), "{name}");
        let flags: Vec<String> = h.user_flags.iter().flatten().cloned().collect();
        assert_eq!(flags, strings(&folder["user_flag_names"]), "{name}");
        assert_eq!(h.to_bytes(HeaderForm::Dlist), file, "{name}");
    }
}

#[test]
fn the_inspect_json_names_fields_and_flags() {
    let dir = spool_or_skip!("the_inspect_json_names_fields_and_flags");
    let all = expected(&dir);
    let inbox = &all["folders"]["INBOX"];
    let header = CyrusHeader::parse(&read(&dir, inbox, "cyrus.header")).unwrap();
    let (h, records) = parse_index(&read(&dir, inbox, "cyrus.index")).unwrap();
    let json = index_to_json(&h, &records, Some(&header));
    assert_eq!(json["header"]["minor_version"], 20);
    assert_eq!(json["header"]["highestmodseq"], 15);
    assert_eq!(json["cyrus_header"]["uniqueid"], inbox["uniqueid"]);
    let uid4 = &json["records"][3];
    assert_eq!(uid4["uid"], 4);
    assert_eq!(uid4["guid"].as_str().unwrap().len(), 40);
    assert_eq!(
        uid4["flags"],
        serde_json::json!(["\\Seen", "$Label1", "$Important"])
    );
    let uid5 = &json["records"][4];
    assert_eq!(
        uid5["flags"],
        serde_json::json!(["\\Deleted", "\\Seen", "[EXPUNGED]"])
    );
    assert_eq!(uid5["internal_flags"], 0x8000_0000u32);
}
