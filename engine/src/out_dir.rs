//! The output directory of a download: the only way a fetch (or a sync) touches the tree the
//! user named.
//!
//! Everything below the output directory is reached relative to an open directory handle,
//! one path component at a time, and **no symbolic link is ever followed** there: a
//! directory component, a partial file or a final name that is a link is refused with an
//! error that names it. New files are created with `O_EXCL`, existing ones are opened with
//! `O_NOFOLLOW` and checked to be regular files with no other hard link before they are
//! resized or written. So whoever can write into a shared output or sync folder cannot make
//! a fetch write anywhere else (a planted `.NAME.swarm-part -> ~/.bashrc` is refused, not
//! truncated). The output directory itself is the user's choice and may be a link.
//!
//! This is written on `rustix`'s `openat` family rather than with `cap-std`: cap-std follows
//! links that stay inside the directory, and we refuse every link.

use std::fs::{File, Metadata};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use swarm_proto::name;

/// Mode of directories created under the output directory (less the umask).
const DIR_MODE: u32 = 0o777;
/// Mode of files created there (less the umask).
const FILE_MODE: u32 = 0o666;

/// Ends the name of a partial download.
const PARTIAL_SUFFIX: &str = ".swarm-part";

/// `.NAME.swarm-part`: the hidden name a download of `NAME` is written under, in the same
/// directory so that the final rename is atomic.
pub fn partial_name_for(file_name: &str) -> String {
    format!(".{file_name}{PARTIAL_SUFFIX}")
}

/// Is `path` a partial download (`.NAME.swarm-part`)?
pub fn is_partial(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(PARTIAL_SUFFIX))
}

/// What is at a name inside a directory, seen without following links.
#[derive(Debug)]
pub enum Entry {
    /// Nothing.
    Missing,
    /// A regular file.
    File(Metadata),
    /// A symbolic link (never followed).
    Link,
    /// A directory, device, FIFO or socket.
    Other,
}

/// A directory opened once, in which names are opened, created and renamed without
/// following links.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory the user named, creating it (and its parents) if missing. Links in
    /// this path are followed: the user chose it.
    pub fn open_root(path: &Path) -> Result<Dir> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(path, e.into()))?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    /// The directory that holds `name` (a validated manifest name, `a/b/file`), created as
    /// needed, and the last component of `name`. Refuses any component that is a link or not
    /// a directory.
    pub fn parent_of<'n>(&self, name: &'n str) -> Result<(Dir, &'n str)> {
        name::validate_name(name).map_err(|e| Error::Unsafe {
            path: self.path.join(name),
            why: e.to_string(),
        })?;
        let (dirs, file) = match name.rsplit_once('/') {
            Some((dirs, file)) => (Some(dirs), file),
            None => (None, name),
        };
        let mut dir = Dir {
            fd: rustix::io::dup(&self.fd).map_err(|e| Error::io(&self.path, e.into()))?,
            path: self.path.clone(),
        };
        for component in dirs.into_iter().flat_map(|d| d.split('/')) {
            dir = dir.subdir(component)?;
        }
        Ok((dir, file))
    }

    /// Removes the directories `name` lies in, deepest first, while they are empty (this
    /// directory itself stays); never through a link. Returns how many went.
    pub fn remove_empty_parents(&self, name: &str) -> usize {
        let Some((dirs, _)) = name.rsplit_once('/') else {
            return 0;
        };
        if name::validate_name(name).is_err() {
            return 0;
        }
        let components: Vec<&str> = dirs.split('/').collect();
        let mut removed = 0;
        for depth in (1..=components.len()).rev() {
            let Ok(fd) = rustix::io::dup(&self.fd) else {
                return removed;
            };
            let mut parent = Dir {
                fd,
                path: self.path.clone(),
            };
            for component in &components[..depth - 1] {
                match parent.subdir(component) {
                    Ok(dir) => parent = dir,
                    Err(_) => return removed,
                }
            }
            // Not empty, gone already, or a link (not a directory): it stays, and so do those
            // above it.
            if rustix::fs::unlinkat(&parent.fd, components[depth - 1], AtFlags::REMOVEDIR).is_err() {
                return removed;
            }
            removed += 1;
        }
        removed
    }

    /// Opens (creating if missing) the subdirectory `component`, refusing links.
    fn subdir(&self, component: &str) -> Result<Dir> {
        let path = self.path.join(component);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let opened = match rustix::fs::openat(&self.fd, component, flags, Mode::empty()) {
            Err(Errno::NOENT) => match rustix::fs::mkdirat(&self.fd, component, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => rustix::fs::openat(&self.fd, component, flags, Mode::empty()),
                Err(e) => Err(e),
            },
            other => other,
        };
        match opened {
            Ok(fd) => Ok(Dir { fd, path }),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(match self.entry(component)? {
                Entry::Link => Error::Unsafe {
                    path,
                    why: "is a symbolic link; swarm never follows links inside the output directory. \
                          Remove the link or choose another output directory"
                        .into(),
                },
                _ => Error::Unsafe {
                    path,
                    why: "is in the way: a directory is needed there. Move it away and run again".into(),
                },
            }),
            Err(e) => Err(Error::io(&path, e.into())),
        }
    }

    /// The path of `name` in this directory, for messages and for the store.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// What is at `name`, without following a link.
    pub fn entry(&self, name: &str) -> Result<Entry> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(Entry::Missing),
            Err(e) => Err(Error::io(&self.join(name), e.into())),
            Ok(stat) => Ok(match FileType::from_raw_mode(stat.st_mode) {
                FileType::Symlink => Entry::Link,
                FileType::RegularFile => Entry::File(
                    self.open_read(name)?
                        .metadata()
                        .map_err(|e| Error::io(&self.join(name), e))?,
                ),
                _ => Entry::Other,
            }),
        }
    }

    /// Opens the existing regular file `name` for reading, refusing links.
    pub fn open_read(&self, name: &str) -> Result<File> {
        self.open_existing(name, OFlags::RDONLY)
    }

    /// Opens `name` for reading and writing: the existing regular file, or a new one (created
    /// with `O_EXCL`). Returns whether it existed. An existing file must have no other hard
    /// link, so that writing to it cannot change a file elsewhere.
    pub fn open_or_create(&self, name: &str) -> Result<(File, bool)> {
        let path = self.join(name);
        let create = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, create, Mode::from_raw_mode(FILE_MODE)) {
            Ok(fd) => Ok((File::from(fd), false)),
            Err(Errno::EXIST) => {
                let file = self.open_existing(name, OFlags::RDWR)?;
                let links = file.metadata().map_err(|e| Error::io(&path, e))?.nlink();
                if links > 1 {
                    return Err(Error::Unsafe {
                        path,
                        why: format!(
                            "has {links} hard links; writing to it would change another file too. Remove it and run again"
                        ),
                    });
                }
                Ok((file, true))
            }
            Err(e) => Err(Error::io(&path, e.into())),
        }
    }

    /// Creates the new file `name`, readable and writable by its owner only (for secrets);
    /// an existing `name`, even a link, is an error.
    pub fn create_private(&self, name: &str) -> Result<File> {
        let create = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, create, Mode::from_raw_mode(0o600))
            .map(File::from)
            .map_err(|e| Error::io(&self.join(name), e.into()))
    }

    /// Opens `name` with direct I/O, if the file system takes it, and only if it is still the
    /// very file `same` (same device and inode).
    pub fn reopen_direct(&self, name: &str, same: &File) -> Option<File> {
        let flags = OFlags::RDWR | OFlags::DIRECT | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = File::from(rustix::fs::openat(&self.fd, name, flags, Mode::empty()).ok()?);
        let (a, b) = (file.metadata().ok()?, same.metadata().ok()?);
        (a.dev() == b.dev() && a.ino() == b.ino()).then_some(file)
    }

    fn open_existing(&self, name: &str, access: OFlags) -> Result<File> {
        let path = self.join(name);
        let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::LOOP) => {
                return Err(Error::Unsafe {
                    path,
                    why: "is a symbolic link; swarm never reads or writes through links inside the output \
                          directory. Remove it and run again"
                        .into(),
                })
            }
            Err(Errno::ISDIR) => return Err(not_regular(path)),
            Err(e) => return Err(Error::io(&path, e.into())),
        };
        let metadata = file.metadata().map_err(|e| Error::io(&path, e))?;
        if !metadata.is_file() {
            return Err(not_regular(path));
        }
        // Opened non-blocking only so that a FIFO planted here could not hang the open.
        rustix::fs::fcntl_setfl(
            &file,
            rustix::fs::fcntl_getfl(&file).map_err(|e| Error::io(&path, e.into()))? - OFlags::NONBLOCK,
        )
        .map_err(|e| Error::io(&path, e.into()))?;
        Ok(file)
    }

    /// Renames `from` to `to` in this directory. Unless `replace`, an existing `to` (even a
    /// link) is never replaced: the result is [`Error::Exists`]. A link at `to` is replaced as
    /// a name, never followed.
    pub fn rename(&self, from: &str, to: &str, replace: bool) -> Result<()> {
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        match rustix::fs::renameat_with(&self.fd, from, &self.fd, to, flags) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(Error::Exists(self.join(to))),
            // File systems without RENAME_NOREPLACE: look, then rename.
            Err(Errno::INVAL | Errno::NOSYS) if !replace => match self.entry(to)? {
                Entry::Missing => {
                    rustix::fs::renameat(&self.fd, from, &self.fd, to).map_err(|e| Error::io(&self.join(to), e.into()))
                }
                _ => Err(Error::Exists(self.join(to))),
            },
            Err(e) => Err(Error::io(&self.join(to), e.into())),
        }
    }

    /// Moves `from` in this directory to `to` in `target`, never replacing anything there
    /// ([`Error::Exists`]) and never following a link.
    pub fn move_to(&self, from: &str, target: &Dir, to: &str) -> Result<()> {
        match rustix::fs::renameat_with(&self.fd, from, &target.fd, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(Error::Exists(target.join(to))),
            Err(Errno::INVAL | Errno::NOSYS) => match target.entry(to)? {
                Entry::Missing => rustix::fs::renameat(&self.fd, from, &target.fd, to)
                    .map_err(|e| Error::io(&target.join(to), e.into())),
                _ => Err(Error::Exists(target.join(to))),
            },
            Err(e) => Err(Error::io(&target.join(to), e.into())),
        }
    }

    /// Gives the regular file `from` in this directory a second name, `to` in `target` (a
    /// hard link: no copy), never replacing anything and never following a link.
    pub fn link_to(&self, from: &str, target: &Dir, to: &str) -> Result<()> {
        if !matches!(self.entry(from)?, Entry::File(_)) {
            return Err(not_regular(self.join(from)));
        }
        match rustix::fs::linkat(&self.fd, from, &target.fd, to, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(Error::Exists(target.join(to))),
            Err(e) => Err(Error::io(&target.join(to), e.into())),
        }
    }

    /// Removes the file `name` (a link is removed, not followed).
    pub fn remove(&self, name: &str) -> Result<()> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(|e| Error::io(&self.join(name), e.into()))
    }
}

fn not_regular(path: PathBuf) -> Error {
    Error::Unsafe {
        path,
        why: "is not a regular file. Move it away and run again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn creates_nested_directories_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_root(&tmp.path().join("out")).unwrap();
        let (dir, file) = root.parent_of("a/b/c.bin").unwrap();
        assert_eq!(file, "c.bin");
        let (_, existed) = dir.open_or_create(file).unwrap();
        assert!(!existed);
        let (_, existed) = dir.open_or_create(file).unwrap();
        assert!(existed);
        assert!(tmp.path().join("out/a/b/c.bin").is_file());
        dir.rename("c.bin", "d.bin", false).unwrap();
        assert!(matches!(dir.entry("d.bin").unwrap(), Entry::File(_)));
        assert!(matches!(dir.entry("c.bin").unwrap(), Entry::Missing));
    }

    #[test]
    fn empty_parents_go_and_nothing_else_does() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/keep.txt"), b"x").unwrap();
        let dir = Dir::open_root(root).unwrap();
        assert_eq!(dir.remove_empty_parents("a/b/c/gone.txt"), 2, "c and b were empty");
        assert!(!root.join("a/b").exists() && root.join("a/keep.txt").exists());
        assert_eq!(dir.remove_empty_parents("top.txt"), 0);

        // Through a link to a directory elsewhere: nothing there is touched.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(elsewhere.path().join("empty")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.join("link")).unwrap();
        assert_eq!(dir.remove_empty_parents("link/empty/gone.txt"), 0);
        assert!(elsewhere.path().join("empty").exists());
    }

    #[test]
    fn refuses_links_in_every_place() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::create_dir_all(&out).unwrap();
        symlink(&victim, out.join("file")).unwrap();
        symlink(tmp.path(), out.join("dir")).unwrap();
        std::fs::hard_link(&victim, out.join("hard")).unwrap();
        let root = Dir::open_root(&out).unwrap();

        let (top, _) = root.parent_of("file").unwrap();
        assert!(matches!(top.entry("file").unwrap(), Entry::Link));
        let err = top.open_or_create("file").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = top.open_read("file").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = top.open_or_create("hard").unwrap_err();
        assert!(err.to_string().contains("hard links"), "{err}");
        let err = root.parent_of("dir/x").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = root.parent_of("file/x").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_root(tmp.path()).unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            tmp.path().join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        for name in ["d", "fifo"] {
            let err = root.open_or_create(name).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{name}: {err}");
        }
    }

    #[test]
    fn rename_never_replaces_unless_asked_and_never_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let out = tmp.path().join("out");
        let root = Dir::open_root(&out).unwrap();
        std::fs::write(out.join("new"), b"fresh").unwrap();
        symlink(&victim, out.join("final")).unwrap();
        assert!(matches!(root.rename("new", "final", false), Err(Error::Exists(_))));
        root.rename("new", "final", true).unwrap();
        assert_eq!(std::fs::read(out.join("final")).unwrap(), b"fresh");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }
}
