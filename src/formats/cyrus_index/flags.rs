//! Flag bits of an index record and option bits of the header (spec §2.4),
//! and their names as IMAP and `mbexamine` show them.

use super::IndexRecord;

pub const FLAG_ANSWERED: u32 = 1 << 0;
pub const FLAG_FLAGGED: u32 = 1 << 1;
pub const FLAG_DELETED: u32 = 1 << 2;
pub const FLAG_DRAFT: u32 = 1 << 3;
/// The owner's \Seen, in the index only from v12 (2.4) on.
pub const FLAG_SEEN: u32 = 1 << 4;

pub const FLAG_INTERNAL_SNOOZED: u32 = 1 << 26;
pub const FLAG_INTERNAL_SPLITCONVERSATION: u32 = 1 << 27;
pub const FLAG_INTERNAL_NEEDS_CLEANUP: u32 = 1 << 28;
/// The message file lives on the archive partition.
pub const FLAG_INTERNAL_ARCHIVED: u32 = 1 << 29;
/// The message file is gone; the record is a tombstone.
pub const FLAG_INTERNAL_UNLINKED: u32 = 1 << 30;
/// Expunged: invisible to IMAP, though the file may still exist.
pub const FLAG_INTERNAL_EXPUNGED: u32 = 1 << 31;

pub const OPT_POP3_NEW_UIDL: u32 = 1 << 0;
pub const OPT_CONDSTORE: u32 = 1 << 1;
pub const OPT_SHAREDSEEN: u32 = 1 << 2;
pub const OPT_DUPDELIVER: u32 = 1 << 3;
pub const OPT_HAS_ALARMS: u32 = 1 << 4;
pub const OPT_NEEDS_UNLINK: u32 = 1 << 29;
pub const OPT_NEEDS_REPACK: u32 = 1 << 30;
pub const OPT_DELETED: u32 = 1 << 31;

/// IMAP system flags in the order Cyrus lists them.
pub const SYSTEM_FLAG_NAMES: [(u32, &str); 5] = [
    (FLAG_ANSWERED, "\\Answered"),
    (FLAG_FLAGGED, "\\Flagged"),
    (FLAG_DELETED, "\\Deleted"),
    (FLAG_DRAFT, "\\Draft"),
    (FLAG_SEEN, "\\Seen"),
];

/// Internal flags as the Perl `Cyrus::IndexFile` names them.
pub const INTERNAL_FLAG_NAMES: [(u32, &str); 6] = [
    (FLAG_INTERNAL_EXPUNGED, "[EXPUNGED]"),
    (FLAG_INTERNAL_UNLINKED, "[UNLINKED]"),
    (FLAG_INTERNAL_ARCHIVED, "[ARCHIVED]"),
    (FLAG_INTERNAL_NEEDS_CLEANUP, "[NEEDS_CLEANUP]"),
    (FLAG_INTERNAL_SPLITCONVERSATION, "[SPLITCONVERSATION]"),
    (FLAG_INTERNAL_SNOOZED, "[SNOOZED]"),
];

impl IndexRecord {
    pub fn is_expunged(&self) -> bool {
        self.internal_flags & FLAG_INTERNAL_EXPUNGED != 0
    }

    pub fn is_unlinked(&self) -> bool {
        self.internal_flags & FLAG_INTERNAL_UNLINKED != 0
    }

    pub fn is_archived(&self) -> bool {
        self.internal_flags & FLAG_INTERNAL_ARCHIVED != 0
    }

    /// Whether user-flag bit `bit` (0–127) is set.
    pub fn has_user_flag(&self, bit: usize) -> bool {
        self.user_flags
            .get(bit / 32)
            .is_some_and(|word| word & (1 << (bit % 32)) != 0)
    }

    /// The set user-flag bits, lowest first.
    pub fn user_flag_bits(&self) -> impl Iterator<Item = usize> + '_ {
        (0..128).filter(|&bit| self.has_user_flag(bit))
    }

    /// The IMAP keywords of this record: set bits named in `names` (the
    /// `cyrus.header` flag list). Bits without a name are left out, as
    /// `reconstruct` would clear them.
    pub fn keywords<'a>(&'a self, names: &'a [Option<String>]) -> impl Iterator<Item = &'a str> {
        self.user_flag_bits()
            .filter_map(|bit| names.get(bit)?.as_deref())
    }

    /// System flags, then keywords, then internal flags, by name.
    pub fn flag_names(&self, names: &[Option<String>]) -> Vec<String> {
        let system = SYSTEM_FLAG_NAMES
            .iter()
            .filter(|(bit, _)| self.system_flags & bit != 0)
            .map(|(_, name)| name.to_string());
        let internal = INTERNAL_FLAG_NAMES
            .iter()
            .filter(|(bit, _)| self.internal_flags & bit != 0)
            .map(|(_, name)| name.to_string());
        system
            .chain(self.keywords(names).map(str::to_string))
            .chain(internal)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expunged_deleted_seen_record_names_all_three() {
        // INBOX uid 5 of the 3.13 fixture: system_flags_raw 2147483668.
        let raw: u32 = 2_147_483_668;
        let r = IndexRecord {
            system_flags: raw & 0xFFFF,
            internal_flags: raw & 0xFFFF_0000,
            ..Default::default()
        };
        assert!(r.is_expunged());
        assert_eq!(r.flag_names(&[]), ["\\Deleted", "\\Seen", "[EXPUNGED]"]);
    }

    #[test]
    fn keywords_come_from_the_header_by_bit_and_unnamed_bits_are_skipped() {
        let names = vec![Some("$Label1".to_string()), None, Some("$Important".into())];
        let r = IndexRecord {
            user_flags: [0b111, 0, 0, 1 << 31],
            ..Default::default()
        };
        assert_eq!(r.user_flag_bits().collect::<Vec<_>>(), [0, 1, 2, 127]);
        assert_eq!(r.flag_names(&names), ["$Label1", "$Important"]);
    }
}
