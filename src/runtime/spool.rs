//! Where a message too large to hold waits while it is verified: a file per
//! message in the spool directory, written in records sealed with AES-256-GCM
//! under a key made for that message and kept only in memory, so a signed
//! payload never rests on disk in clear. The file is removed when its last
//! handle goes (forwarded, refused, client gone, shutdown), and files a
//! killed process left behind are removed when the directory is opened.
//!
//! The directory has a total cap, reserved before bytes are written: a
//! message that would not fit is refused (503) rather than the disk filling
//! mid-message.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// Plain bytes per sealed record.
const RECORD: usize = 64 << 10;
/// A record's length prefix and tag.
const OVERHEAD: u64 = 4 + 16;
const SUFFIX: &str = ".sealgate-spool";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full")]
    Full,
    #[error("spool file: {0}")]
    Io(#[from] io::Error),
    #[error("a spool record does not open (the file was altered or cut short)")]
    Corrupt,
}

/// The spool directory and what is reserved in it. One per directory for
/// the process, kept across reloads, so the cap counts every message in it.
#[derive(Debug)]
pub struct SpoolDir {
    dir: PathBuf,
    max_total: AtomicU64,
    used: AtomicU64,
}

/// Disk bytes a message of `plain` bytes takes.
pub fn disk_size(plain: u64) -> u64 {
    plain + plain.div_ceil(RECORD as u64).max(1) * OVERHEAD
}

impl SpoolDir {
    /// The directory is made when first needed.
    pub fn new(dir: &Path, max_total: u64) -> SpoolDir {
        SpoolDir {
            dir: dir.to_owned(),
            max_total: AtomicU64::new(max_total),
            used: AtomicU64::new(0),
        }
    }

    /// Creates the directory (owner only) if need be and removes spool files
    /// left there by a process that did not end cleanly. Called when the
    /// gateway starts, never on reload (the files are then live).
    pub fn sweep(&self) -> io::Result<()> {
        let dir_uid = self.make()?;
        let probe = self
            .dir
            .join(format!("probe-{}{SUFFIX}", crate::hex::random_id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)?;
        let owned = self.owned(dir_uid, &file);
        let _ = std::fs::remove_file(&probe);
        owned?;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(SUFFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Creates the directory if need be and checks it is fit for messages:
    /// a directory, not a link, writable by no one but its owner (whose uid
    /// it returns). One another local user made (a predictable path under
    /// /tmp) or can write in would let them remove or swap files mid-message.
    fn make(&self) -> io::Result<u32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let m = std::fs::symlink_metadata(&self.dir)?;
        let dir = self.dir.display();
        if !m.file_type().is_dir() {
            return Err(io::Error::other(format!(
                "{dir} is not a directory (a symbolic link is not followed)"
            )));
        }
        if m.mode() & 0o022 != 0 {
            return Err(io::Error::other(format!(
                "{dir} is writable by other users (mode {:o}); chmod go-w it or choose another [spool] dir",
                m.mode() & 0o777
            )));
        }
        Ok(m.uid())
    }

    /// A file this process just made there shows whose the process is: the
    /// directory must be the same user's.
    fn owned(&self, dir_uid: u32, file: &File) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let me = file.metadata()?.uid();
        if me != dir_uid {
            return Err(io::Error::other(format!(
                "{} belongs to uid {dir_uid}, not to this process's uid {me}; choose another [spool] dir",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// A reload's new cap (what is reserved stays reserved).
    pub fn set_max_total(&self, max_total: u64) {
        self.max_total.store(max_total, Ordering::Relaxed);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes reserved now, for metrics and tests.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn reserve(&self, n: u64) -> Result<(), SpoolError> {
        let mut now = self.used.load(Ordering::Relaxed);
        loop {
            let max = self.max_total.load(Ordering::Relaxed);
            let next = now.checked_add(n).filter(|&t| t <= max);
            let next = next.ok_or(SpoolError::Full)?;
            match self
                .used
                .compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => now = seen,
            }
        }
    }

    /// A new spool file, with room for `expect` plain bytes reserved up front
    /// when the size is known (so a message that cannot fit is refused
    /// before any of it is read).
    pub fn create(self: &Arc<Self>, expect: Option<u64>) -> Result<SpoolWriter, SpoolError> {
        let reserved = expect.map_or(0, disk_size);
        self.reserve(reserved)?;
        // Held at once, so every failure below gives the reservation back.
        let mut held = Held {
            path: PathBuf::new(),
            dir: self.clone(),
            reserved,
        };
        let dir_uid = self.make()?;
        let mut name = [0u8; 12];
        aws_lc_rs::rand::fill(&mut name).map_err(|_| SpoolError::Io(io::Error::other("rand")))?;
        let path = self
            .dir
            .join(format!("{}{SUFFIX}", crate::hex::lower(&name)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        // Only a file this call created is ever removed.
        held.path = path;
        self.owned(dir_uid, &file)?;
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| SpoolError::Io(io::Error::other("rand")))?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key);
        key.fill(0);
        let key = LessSafeKey::new(unbound.map_err(|_| SpoolError::Io(io::Error::other("key")))?);
        Ok(SpoolWriter {
            file: io::BufWriter::with_capacity(RECORD + 64, file),
            key,
            records: 0,
            plain: 0,
            written: 0,
            buf: Vec::with_capacity(RECORD),
            held,
        })
    }
}

/// The file and its reservation: both released when the last handle goes.
struct Held {
    path: PathBuf,
    dir: Arc<SpoolDir>,
    reserved: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
        self.dir.used.fetch_sub(self.reserved, Ordering::AcqRel);
    }
}

fn nonce(record: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 8..].copy_from_slice(&record.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// A message being spooled. No `Debug`: it holds the message's key.
pub struct SpoolWriter {
    file: io::BufWriter<File>,
    key: LessSafeKey,
    records: u64,
    plain: u64,
    /// Disk bytes written (within `held.reserved`).
    written: u64,
    buf: Vec<u8>,
    held: Held,
}

impl SpoolWriter {
    pub fn path(&self) -> &Path {
        &self.held.path
    }

    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), SpoolError> {
        self.plain += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = RECORD - self.buf.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.buf.extend_from_slice(now);
            bytes = later;
            if self.buf.len() == RECORD {
                self.seal()?;
            }
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<(), SpoolError> {
        let need = self.buf.len() as u64 + OVERHEAD;
        if self.written + need > self.held.reserved {
            let more = self.written + need - self.held.reserved;
            self.held.dir.reserve(more)?;
            self.held.reserved += more;
        }
        let n = nonce(self.records);
        self.key
            .seal_in_place_append_tag(n, Aad::empty(), &mut self.buf)
            .map_err(|_| SpoolError::Io(io::Error::other("seal")))?;
        let len = u32::try_from(self.buf.len()).map_err(|_| SpoolError::Corrupt)?;
        self.file.write_all(&len.to_le_bytes())?;
        self.file.write_all(&self.buf)?;
        self.written += need;
        self.records += 1;
        self.buf.clear();
        Ok(())
    }

    /// The whole message is in: read it back from the start.
    pub fn finish(mut self) -> Result<SpoolReader, SpoolError> {
        if !self.buf.is_empty() {
            self.seal()?;
        }
        self.file.flush()?;
        let mut file = self
            .file
            .into_inner()
            .map_err(|e| SpoolError::Io(e.into_error()))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(SpoolReader {
            file,
            key: self.key,
            records: self.records,
            next: 0,
            skip: 0,
            plain: self.plain,
            left: self.plain,
            buf: Vec::with_capacity(RECORD + 16),
            held: self.held,
        })
    }
}

/// A spooled message read back, record by record, each opened before any
/// of it is handed on.
pub struct SpoolReader {
    file: File,
    key: LessSafeKey,
    records: u64,
    next: u64,
    skip: u64,
    plain: u64,
    left: u64,
    buf: Vec<u8>,
    held: Held,
}

impl SpoolReader {
    /// Back to the message's first byte (for another pass over it).
    pub fn rewind(&mut self) -> Result<(), SpoolError> {
        self.file.seek(SeekFrom::Start(0))?;
        self.next = 0;
        self.skip = 0;
        self.left = self.plain;
        Ok(())
    }

    /// Leaves out the first `n` plain bytes (what went on in their place).
    pub fn skip(&mut self, n: u64) {
        self.skip = n.min(self.left);
        self.left -= self.skip;
    }

    /// Plain bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// The next piece, or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, SpoolError> {
        while self.next < self.records {
            let mut len = [0u8; 4];
            self.file.read_exact(&mut len)?;
            let len = u32::from_le_bytes(len) as usize;
            if len > RECORD + 16 {
                return Err(SpoolError::Corrupt);
            }
            self.buf.resize(len, 0);
            self.file.read_exact(&mut self.buf)?;
            let plain = self
                .key
                .open_in_place(nonce(self.next), Aad::empty(), &mut self.buf)
                .map_err(|_| SpoolError::Corrupt)?;
            self.next += 1;
            let drop = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(plain.len());
            self.skip -= drop as u64;
            let rest = plain.get(drop..).unwrap_or_default();
            if !rest.is_empty() {
                self.left = self.left.saturating_sub(rest.len() as u64);
                return Ok(Some(bytes::Bytes::copy_from_slice(rest)));
            }
        }
        Ok(None)
    }

    pub fn path(&self) -> &Path {
        &self.held.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(max: u64) -> (PathBuf, Arc<SpoolDir>) {
        let p =
            std::env::temp_dir().join(format!("sealgate-spool-test-{}", crate::hex::random_id()));
        let d = Arc::new(SpoolDir::new(&p, max));
        d.sweep().unwrap();
        (p, d)
    }

    #[test]
    fn a_message_reads_back_as_written_and_never_rests_in_clear() {
        let (p, d) = dir(1 << 30);
        let msg: Vec<u8> = b"<Body>ACME-42 payload </Body>".repeat(10_000);
        let mut w = d.create(None).unwrap();
        for piece in msg.chunks(7_001) {
            w.write(piece).unwrap();
        }
        let mut r = w.finish().unwrap();
        let sealed = std::fs::read(r.path()).unwrap();
        assert!(
            sealed.len() as u64 == disk_size(msg.len() as u64),
            "{}",
            sealed.len()
        );
        assert!(
            !sealed.windows(7).any(|x| x == b"ACME-42"),
            "plaintext on disk"
        );
        let mut first = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            first.extend_from_slice(&c);
        }
        assert_eq!(first, msg);
        r.rewind().unwrap();
        r.skip(6);
        let mut back = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            back.extend_from_slice(&c);
        }
        assert_eq!(back, msg[6..]);
        let path = r.path().to_owned();
        drop(r);
        assert!(!path.exists(), "the file outlived its reader");
        assert_eq!(d.used(), 0);
        let _ = std::fs::remove_dir_all(p);
    }

    #[test]
    fn the_cap_refuses_up_front_and_mid_message_and_frees_on_drop() {
        let (p, d) = dir(disk_size(100_000));
        assert!(matches!(d.create(Some(100_001)), Err(SpoolError::Full)));
        let a = d.create(Some(60_000)).unwrap();
        assert!(matches!(d.create(Some(60_000)), Err(SpoolError::Full)));
        let mut b = d.create(None).unwrap();
        let big = vec![b'x'; 200_000];
        assert!(matches!(b.write(&big), Err(SpoolError::Full)));
        drop((a, b));
        assert_eq!(d.used(), 0);
        assert_eq!(
            std::fs::read_dir(&p).unwrap().count(),
            0,
            "files left behind"
        );
        let _ = std::fs::remove_dir_all(p);
    }

    #[test]
    fn a_record_altered_on_disk_is_refused() {
        let (p, d) = dir(1 << 30);
        let mut w = d.create(None).unwrap();
        w.write(&[b'a'; 1000]).unwrap();
        let mut r = w.finish().unwrap();
        let mut bytes = std::fs::read(r.path()).unwrap();
        bytes[10] ^= 1;
        std::fs::write(r.path(), &bytes).unwrap();
        assert!(matches!(r.next_chunk(), Err(SpoolError::Corrupt)));
        drop(r);
        let _ = std::fs::remove_dir_all(p);
    }

    #[test]
    fn a_directory_others_can_write_or_a_link_is_refused_and_nothing_stays_reserved() {
        use std::os::unix::fs::PermissionsExt;
        let (p, d) = dir(1 << 20);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = d.create(Some(1000)).err().unwrap().to_string();
        assert!(e.contains("writable by other users"), "{e}");
        assert_eq!(d.used(), 0, "a failed create kept its reservation");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o750)).unwrap();
        drop(d.create(Some(1000)).unwrap());
        // Another user's directory (only root can hand it over to test this).
        if std::os::unix::fs::chown(&p, Some(65534), None).is_ok() {
            let e = d.create(None).err().unwrap().to_string();
            assert!(e.contains("belongs to uid 65534"), "{e}");
            assert!(d.sweep().is_err());
            assert_eq!(std::fs::read_dir(&p).unwrap().count(), 0, "a file stayed");
        }
        let link = p.with_extension("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = SpoolDir::new(&link, 1 << 20)
            .sweep()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
        let _ = std::fs::remove_file(link);
        let _ = std::fs::remove_dir_all(p);
    }

    #[test]
    fn opening_the_directory_removes_what_a_killed_process_left() {
        let (p, d) = dir(1 << 20);
        let w = d.create(None).unwrap();
        let left = w.path().to_owned();
        std::mem::forget(w);
        let keep = p.join("operator-notes.txt");
        std::fs::write(&keep, b"x").unwrap();
        SpoolDir::new(&p, 1 << 20).sweep().unwrap();
        assert!(!left.exists());
        assert!(keep.exists(), "only spool files are removed");
        let _ = std::fs::remove_dir_all(p);
    }
}
