//! Why this process may not write where the database goes, in the words a
//! person needs to fix it: which uid the connector runs as, who owns the
//! file or folder in the way, and how to grant access. In Docker this is
//! the common case: the image runs as uid 1000, and a host folder mounted
//! at `/local` keeps its host owner (often root, mode 0755).
//!
//! The reasoning is from the mode bits, as for a process without
//! `CAP_DAC_OVERRIDE` (any non-root user, and root with its capabilities
//! dropped). It is only called once the operating system has refused.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::LOCAL_ROOT_ENV;

/// The file-access identity of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Identity {
    /// This process's identity, from `/proc/self/status` (Linux); None
    /// where that cannot be read.
    pub fn current() -> Option<Identity> {
        Identity::parse(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// Parses the `Uid:`, `Gid:` and `Groups:` lines of a
    /// `/proc/<pid>/status` file; the file-system ids (the fourth field)
    /// are the ones the kernel checks.
    ///
    /// ```
    /// use destination_duckdb::access::Identity;
    /// let id = Identity::parse("Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t27 1000\n");
    /// assert_eq!(id, Some(Identity { uid: 1000, gid: 1000, groups: vec![27, 1000] }));
    /// ```
    pub fn parse(status: &str) -> Option<Identity> {
        let field = |name: &str| -> Option<&str> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
        };
        let fs_id =
            |name: &str| -> Option<u32> { field(name)?.split_whitespace().nth(3)?.parse().ok() };
        Some(Identity {
            uid: fs_id("Uid:")?,
            gid: fs_id("Gid:")?,
            groups: field("Groups:")
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect(),
        })
    }

    /// Whether the mode bits of `meta` grant this identity all of `want`
    /// (a combination of 4 = read, 2 = write, 1 = execute/search).
    fn may(&self, meta: &Metadata, want: u32) -> bool {
        let mode = meta.mode();
        let bits = if meta.uid() == self.uid {
            mode >> 6
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        } & 0o7;
        bits & want == want
    }
}

/// A sentence or two for a failure to create or write the database `path`:
/// what this process is, what is in its way and how to grant access. None
/// when the process's identity is unknown (not Linux).
pub fn unwritable_hint(path: &Path) -> Option<String> {
    let id = Identity::current()?;
    Some(hint_for(&id, path))
}

fn hint_for(id: &Identity, path: &Path) -> String {
    let who = format!("This connector runs as uid {} (gid {})", id.uid, id.gid);
    let wal = path.with_file_name(format!(
        "{}.wal",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    // An existing file that cannot be written: the database or its WAL.
    for file in [path, wal.as_path()] {
        if let Ok(meta) = std::fs::metadata(file) {
            if meta.is_file() && !id.may(&meta, 2) {
                return format!(
                    "{who}, and `{}` belongs to uid {} (gid {}) with mode {:04o}: uid {} cannot write it. {}",
                    file.display(),
                    meta.uid(),
                    meta.gid(),
                    meta.mode() & 0o7777,
                    id.uid,
                    grant(id, file, &meta)
                );
            }
        }
    }
    // The nearest folder that exists: where the file (or its missing
    // parent folders) would be created.
    let Some((dir, meta)) = nearest_folder(path) else {
        return format!("{who}.");
    };
    if !id.may(&meta, 2 | 1) {
        return format!(
            "{who}, and the folder `{}` belongs to uid {} (gid {}) with mode {:04o}: uid {} cannot create files in it. {}",
            dir.display(),
            meta.uid(),
            meta.gid(),
            meta.mode() & 0o7777,
            id.uid,
            grant(id, &dir, &meta)
        );
    }
    format!(
        "{who}, and the permissions of `{}` let it write there, so the location itself is read-only \
         (a read-only mount, `:ro` volume or file system).",
        dir.display()
    )
}

/// How to let `id` write `target` (owned per `meta`).
fn grant(id: &Identity, target: &Path, meta: &Metadata) -> String {
    let shown = target.display();
    let root = std::env::var_os(LOCAL_ROOT_ENV)
        .filter(|r| !r.is_empty())
        .map(PathBuf::from);
    let (place, name) = match &root {
        // Inside the container the host path is unknown: name the mount.
        Some(root) if target.starts_with(root) => (
            format!("on the host, to the folder mounted at `{}`", root.display()),
            "FOLDER".to_string(),
        ),
        _ => (format!("to `{shown}`"), shown.to_string()),
    };
    let mut how = format!(
        "Give uid {uid} write access {place}, for example `sudo chown -R {uid}:{gid} {name}` \
         or `sudo chmod a+rwx {name}`",
        uid = id.uid,
        gid = id.gid,
    );
    if meta.uid() != 0 && meta.uid() != id.uid {
        how.push_str(&format!(
            ", or run the connector as its owner (with Docker: `docker run --user {}:{} ...`)",
            meta.uid(),
            meta.gid()
        ));
    }
    how.push('.');
    how
}

/// The nearest existing folder at or above the parent of `path`.
fn nearest_folder(path: &Path) -> Option<(PathBuf, Metadata)> {
    let absolute = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    absolute.ancestors().skip(1).find_map(|dir| {
        std::fs::metadata(dir)
            .ok()
            .filter(Metadata::is_dir)
            .map(|m| (dir.to_path_buf(), m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_system_ids() {
        let status = "Name:\tx\nUid:\t0\t1000\t1000\t1001\nGid:\t0\t1000\t1000\t1002\nGroups:\t\n";
        assert_eq!(
            Identity::parse(status),
            Some(Identity {
                uid: 1001,
                gid: 1002,
                groups: vec![]
            })
        );
        assert_eq!(Identity::parse("Name:\tx\n"), None);
    }

    #[test]
    fn a_folder_of_another_user_is_named_with_its_owner_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("ro");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let owner = std::fs::metadata(&sub).unwrap().uid();
        // Someone who is neither the owner nor in its group.
        let stranger = Identity {
            uid: owner.wrapping_add(4242),
            gid: 4242,
            groups: vec![],
        };
        let hint = hint_for(&stranger, &sub.join("db.duckdb"));
        assert!(
            hint.contains(&format!("runs as uid {} (gid 4242)", stranger.uid)),
            "{hint}"
        );
        assert!(hint.contains(&format!("belongs to uid {owner}")), "{hint}");
        assert!(hint.contains("mode 0755"), "{hint}");
        assert!(hint.contains("chown -R"), "{hint}");
        // The owner may write there: then only a read-only mount is left.
        let me = Identity {
            uid: owner,
            gid: 4242,
            groups: vec![],
        };
        assert!(hint_for(&me, &sub.join("db.duckdb")).contains("read-only"));
    }
}
