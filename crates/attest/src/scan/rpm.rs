//! rpm: the SQLite rpmdb (`/var/lib/rpm/rpmdb.sqlite`, or
//! `/usr/lib/sysimage/rpm/rpmdb.sqlite`): each row of `Packages` is a
//! package's header (index entries, then the data they point into).
//! Berkeley DB and NDB databases (older distributions) are not read.

use super::sqlite::{Database, Value};
use super::{distro, read, OsRelease};
use crate::files::ImageFiles;
use crate::package::{purl, Ecosystem, OwnedFile, Package};

const DATABASES: [&str; 2] = [
    "/var/lib/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
];

const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const VENDOR: u32 = 1011;
const LICENSE: u32 = 1014;
const ARCH: u32 = 1022;
const FILEDIGESTS: u32 = 1035;
const DIRINDEXES: u32 = 1116;
const BASENAMES: u32 = 1117;
const DIRNAMES: u32 = 1118;
const FILEDIGESTALGO: u32 = 5011;

pub fn scan(files: &dyn ImageFiles, os: Option<&OsRelease>) -> Vec<Package> {
    let mut out = Vec::new();
    for db in DATABASES {
        let Some(bytes) = read(files, db) else {
            continue;
        };
        let rows = Database::open(&bytes).and_then(|d| d.table("Packages"));
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("sbom: reading {db}: {e}");
                continue;
            }
        };
        for row in rows {
            let Some(Value::Blob(blob)) = row.get(1) else {
                continue;
            };
            match Header::parse(blob) {
                Some(h) => out.extend(package(&h, db, os)),
                None => tracing::warn!("sbom: {db}: a package header does not parse"),
            }
        }
    }
    out
}

fn package(h: &Header, db: &str, os: Option<&OsRelease>) -> Option<Package> {
    let name = h.string(NAME)?;
    // Imported signing keys are rows too.
    if name == "gpg-pubkey" {
        return None;
    }
    let version = format!("{}-{}", h.string(VERSION)?, h.string(RELEASE)?);
    let arch = h.string(ARCH).unwrap_or_default();
    let epoch = h
        .ints(EPOCH)
        .first()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let namespace = os.map(|o| o.id.clone()).unwrap_or_default();
    let distro = distro(os);
    let algo = match h.ints(FILEDIGESTALGO).first() {
        Some(8) | None => Some("SHA256"),
        Some(1) => Some("MD5"),
        Some(2) => Some("SHA1"),
        Some(9) => Some("SHA384"),
        Some(10) => Some("SHA512"),
        _ => None,
    };
    let (dirs, bases, idx, digests) = (
        h.strings(DIRNAMES),
        h.strings(BASENAMES),
        h.ints(DIRINDEXES),
        h.strings(FILEDIGESTS),
    );
    let mut files: Vec<OwnedFile> = bases
        .iter()
        .zip(&idx)
        .enumerate()
        .filter_map(|(i, (base, d))| {
            let dir = dirs.get(*d as usize)?;
            let checksum = digests
                .get(i)
                .filter(|s| !s.is_empty())
                .and_then(|s| algo.map(|a| (a, s.clone())));
            Some(OwnedFile {
                path: format!("{dir}{base}"),
                checksum,
            })
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Some(Package {
        ecosystem: Ecosystem::Rpm,
        purl: purl(
            "rpm",
            Some(&namespace),
            &name,
            &version,
            &[("arch", &arch), ("epoch", &epoch), ("distro", &distro)],
        ),
        name,
        version,
        license: h.string(LICENSE),
        supplier: h.string(VENDOR),
        found_in: db.into(),
        files,
    })
}

/// An rpm header as the database stores it: entry count, data length,
/// 16-byte entries (tag, type, offset, count), then the data.
struct Header<'a> {
    entries: Vec<(u32, u32, usize, usize)>,
    data: &'a [u8],
}

impl<'a> Header<'a> {
    fn parse(b: &'a [u8]) -> Option<Header<'a>> {
        let be = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
        let (il, dl) = (be(0)? as usize, be(4)? as usize);
        let start = 8usize.checked_add(il.checked_mul(16)?)?;
        let data = b.get(start..start.checked_add(dl)?)?;
        let entries = (0..il)
            .map(|i| {
                let at = 8 + 16 * i;
                Some((
                    be(at)?,
                    be(at + 4)?,
                    be(at + 8)? as usize,
                    be(at + 12)? as usize,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Header { entries, data })
    }

    fn entry(&self, tag: u32) -> Option<&(u32, u32, usize, usize)> {
        self.entries.iter().find(|e| e.0 == tag)
    }

    /// STRING, STRING_ARRAY and I18NSTRING values.
    fn strings(&self, tag: u32) -> Vec<String> {
        let Some(&(_, kind, off, count)) = self.entry(tag) else {
            return Vec::new();
        };
        if !matches!(kind, 6 | 8 | 9) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut rest = self.data.get(off..).unwrap_or_default();
        for _ in 0..count.min(1 << 20) {
            let Some(end) = rest.iter().position(|&c| c == 0) else {
                break;
            };
            out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            rest = &rest[end + 1..];
        }
        out
    }

    fn string(&self, tag: u32) -> Option<String> {
        self.strings(tag)
            .into_iter()
            .next()
            .filter(|s| !s.is_empty())
    }

    /// INT32 values.
    fn ints(&self, tag: u32) -> Vec<u32> {
        let Some(&(_, 4, off, count)) = self.entry(tag) else {
            return Vec::new();
        };
        (0..count.min(1 << 20))
            .map_while(|i| {
                let s = self.data.get(off + 4 * i..off + 4 * i + 4)?;
                Some(u32::from_be_bytes(s.try_into().ok()?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::scan::testing::put;

    /// A database rpm itself wrote (Debian's rpm 4.18, `--justdb` install
    /// of a noarch package of 301 files: its header spans overflow
    /// pages), its index tables dropped and vacuumed to keep it small.
    #[test]
    fn reads_rpms_own_database() {
        let db = include_bytes!("../../tests/fixtures/rpmdb.sqlite");
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "/var/lib/rpm/rpmdb.sqlite", db);
        put(d.path(), "/etc/os-release", b"ID=fedora\nVERSION_ID=40\n");
        let inv = crate::scan::scan(&crate::files::DirFiles::new(d.path()));
        assert_eq!(inv.packages.len(), 1, "{:?}", inv.packages);
        let p = &inv.packages[0];
        assert_eq!(
            p.purl,
            "pkg:rpm/fedora/kiln-hello@1.2-3?arch=noarch&distro=fedora-40"
        );
        assert_eq!(p.license.as_deref(), Some("MIT"));
        let greeting = p
            .files
            .iter()
            .find(|f| f.path == "/usr/share/kiln-hello/greeting")
            .unwrap();
        assert!(p.files.len() >= 301);
        let (algo, hex) = greeting.checksum.clone().unwrap();
        assert_eq!(algo, "SHA256");
        assert_eq!(hex, crate::sha256_hex(b"hi\n"));
    }

    #[test]
    fn hostile_databases_are_refused_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let mut db = include_bytes!("../../tests/fixtures/rpmdb.sqlite").to_vec();
        // Every page pointer made to point at page 1 (a loop), and a
        // truncated copy: both refused with a warning, no package.
        for b in db.iter_mut().skip(100).step_by(97) {
            *b = 0xff;
        }
        put(d.path(), "/var/lib/rpm/rpmdb.sqlite", &db);
        put(d.path(), "/usr/lib/sysimage/rpm/rpmdb.sqlite", &db[..5000]);
        let inv = crate::scan::scan(&crate::files::DirFiles::new(d.path()));
        assert!(inv.packages.len() <= 1);
    }
}
