//! File names as they travel in manifests: relative, `/`-separated paths inside a shared
//! directory. The same check runs when a seeder registers, at the tracker, and again in the
//! fetcher before anything touches the disk, so a hostile name can never escape the
//! directory the user named.

use std::path::{Component, Path, PathBuf};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 4096;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("the name is {0} bytes long (at most {MAX_NAME_LEN})")]
    TooLong(usize),
    /// Starts with `/`.
    #[error("the name is an absolute path")]
    Absolute,
    /// Has a `..` or `.` component.
    #[error("the name has a `.` or `..` component")]
    DotComponent,
    /// Has an empty component (`a//b`, or a trailing `/`).
    #[error("the name has an empty path component")]
    EmptyComponent,
    /// Has a backslash.
    #[error("the name contains a backslash")]
    Backslash,
    /// Has a NUL byte.
    #[error("the name contains a NUL byte")]
    Nul,
    /// Has a control or bidirectional formatting character (see [`is_unprintable`]).
    #[error("the name contains the unprintable character {0:?}")]
    Unprintable(char),
}

/// Characters refused in names and escaped when printed: control characters (C0, DEL, C1:
/// ESC and newline can repaint a terminal or forge lines) and the bidirectional formatting
/// characters that can make a name display as another (`exe.txt` shown for `txt.exe`).
pub fn is_unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` as it is safe to print on a terminal: every character of [`is_unprintable`] is
/// written as a `\u{..}` escape. Names from the network go through this before they are shown.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if is_unprintable(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Checks that `name` is a safe relative path (see the module doc).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    if let Some(c) = name.chars().find(|&c| is_unprintable(c)) {
        return Err(NameError::Unprintable(c));
    }
    if name.contains('\\') {
        return Err(NameError::Backslash);
    }
    if name.starts_with('/') {
        return Err(NameError::Absolute);
    }
    for part in name.split('/') {
        match part {
            "" => return Err(NameError::EmptyComponent),
            "." | ".." => return Err(NameError::DotComponent),
            _ => {}
        }
    }
    Ok(())
}

/// Joins a validated `name` under `dir`. The result is always inside `dir`.
pub fn path_in(dir: &Path, name: &str) -> Result<PathBuf, NameError> {
    validate_name(name)?;
    let relative = Path::new(name);
    // Belt and braces: the string check above already excludes these.
    if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(NameError::DotComponent);
    }
    Ok(dir.join(relative))
}

/// The manifest name of `path` inside `root`, or `None` if it is not a plain UTF-8 path under it.
pub fn name_of(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    let name = parts?.join("/");
    validate_name(&name).ok()?;
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_relative_paths() {
        for ok in ["a", "a/b.txt", "dir/sub/file", "..hidden", "a..b", ".config/x"] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_tricks() {
        let cases = [
            ("", NameError::Empty),
            ("/etc/passwd", NameError::Absolute),
            ("../x", NameError::DotComponent),
            ("a/../../x", NameError::DotComponent),
            ("a/./b", NameError::DotComponent),
            ("a//b", NameError::EmptyComponent),
            ("a/", NameError::EmptyComponent),
            ("a\\..\\b", NameError::Backslash),
            ("a\0b", NameError::Nul),
            ("a\x1b[2Jb", NameError::Unprintable('\x1b')),
            ("line\nforged", NameError::Unprintable('\n')),
            ("a\u{9b}b", NameError::Unprintable('\u{9b}')),
            ("harmless\u{202e}txt.exe", NameError::Unprintable('\u{202e}')),
        ];
        for (name, want) in cases {
            assert_eq!(validate_name(name), Err(want), "{name:?}");
        }
        assert!(matches!(
            validate_name(&"a".repeat(4097)),
            Err(NameError::TooLong(4097))
        ));
        assert_eq!(validate_name(&"a".repeat(4096)), Ok(()));
    }

    #[test]
    fn unprintable_characters_are_escaped_for_printing() {
        assert_eq!(printable("plain/name é.txt"), "plain/name é.txt");
        assert_eq!(printable("a\x1b[31mb\nc"), "a\\u{1b}[31mb\\u{a}c");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn name_of_round_trips() {
        let root = Path::new("/data/share");
        assert_eq!(name_of(root, Path::new("/data/share/a/b")).as_deref(), Some("a/b"));
        assert_eq!(name_of(root, Path::new("/data/other")), None);
    }

    proptest! {
        #[test]
        fn accepted_names_stay_inside(name in "[a-z./\\\\]{1,20}") {
            let dir = Path::new("/out");
            if let Ok(path) = path_in(dir, &name) {
                prop_assert!(path.starts_with(dir));
                prop_assert!(path.components().all(|c| !matches!(c, Component::ParentDir)));
            }
        }
    }
}
