//! Names a client sends (user, folder, sieve item) are checked before any of
//! them touches a path or a database key. The reply for a bad one is a `NO`.

/// Longer names are refused outright (Cyrus's own limit is near 490 bytes).
pub const MAX_NAME: usize = 1000;

/// A name from a client that we refuse to look up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad {what} name {shown:?}: {problem}")]
pub struct BadName {
    pub what: &'static str,
    pub shown: String,
    pub problem: &'static str,
}

fn bad(what: &'static str, name: &str, problem: &'static str) -> BadName {
    BadName {
        what,
        shown: name.chars().take(80).collect(),
        problem,
    }
}

fn common(what: &'static str, name: &str) -> Result<(), BadName> {
    if name.is_empty() {
        return Err(bad(what, name, "empty"));
    }
    if name.len() > MAX_NAME {
        return Err(bad(what, name, "longer than 1000 bytes"));
    }
    if name.contains('\0') {
        return Err(bad(what, name, "contains NUL"));
    }
    Ok(())
}

/// A userid: no `/`, no `..`, no NUL, not over-long.
pub fn check_user(name: &str) -> Result<(), BadName> {
    common("user", name)?;
    if name.contains('/') {
        return Err(bad("user", name, "contains /"));
    }
    if name.contains("..") || name.starts_with('.') {
        return Err(bad("user", name, "contains .."));
    }
    Ok(())
}

/// An external folder name: `/` may be the hierarchy separator, but no
/// level may be `..` and no NUL may appear.
pub fn check_folder(name: &str) -> Result<(), BadName> {
    common("folder", name)?;
    if name.split(['/', '.']).any(|part| part == "..") || name.contains("..") {
        return Err(bad("folder", name, "contains .."));
    }
    Ok(())
}

/// The file part of a `sieve/<file>` item: one plain directory entry.
pub fn check_file(name: &str) -> Result<(), BadName> {
    common("file", name)?;
    if name.contains('/') || name == "." || name == ".." {
        return Err(bad("file", name, "not a plain file name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_user_names_are_refused() {
        for name in ["../x", "a/b", "a\0b", "", "..", ".hidden", "x..y"] {
            assert!(check_user(name).is_err(), "{name:?}");
        }
        assert!(check_user(&"a".repeat(1001)).is_err());
        for name in ["user1", "carol.smith", "bob@example.com", &"a".repeat(1000)] {
            assert!(check_user(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn folder_names_may_use_slash_but_never_climb() {
        assert!(check_folder("INBOX/Work.Projects").is_ok());
        assert!(check_folder("INBOX.Entw&APw-rfe").is_ok());
        assert!(check_folder("DELETED.user.alice.Junk.6B079A55").is_ok());
        for name in ["INBOX/../x", "INBOX..x", "..", "INBOX\0", ""] {
            assert!(check_folder(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn sieve_items_are_single_entries() {
        assert!(check_file("vacation.script").is_ok());
        assert!(check_file("defaultbc").is_ok());
        for name in ["../x", "a/b", ".", "..", ""] {
            assert!(check_file(name).is_err(), "{name:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_users_never_hold_path_syntax(name in ".{0,40}") {
            if check_user(&name).is_ok() {
                prop_assert!(!name.contains('/') && !name.contains("..") && !name.contains('\0'));
            }
        }
    }
}
