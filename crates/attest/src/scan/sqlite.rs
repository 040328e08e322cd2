//! Just enough of SQLite's file format to read every row of one table
//! (rpm's `Packages`): the schema table to find its root page, then its
//! b-tree, overflow pages included. Read-only, bounds-checked, and never
//! more pages than the file holds (a loop of pages is refused).

use std::fmt;

#[derive(Debug)]
pub struct SqliteError(String);

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqliteError {}

fn bad(what: impl Into<String>) -> SqliteError {
    SqliteError(what.into())
}

/// A column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

pub struct Database<'a> {
    bytes: &'a [u8],
    page_size: usize,
    usable: usize,
}

/// SQLite's variable-length integer: up to nine bytes, big-endian.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(i)?;
        if i == 8 {
            return Some(((v << 8) | byte as u64, 9));
        }
        v = (v << 7) | (byte & 0x7f) as u64;
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

impl<'a> Database<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<Database<'a>, SqliteError> {
        if bytes.len() < 100 || &bytes[..16] != b"SQLite format 3\0" {
            return Err(bad("not an SQLite database"));
        }
        let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => n as usize,
            n => return Err(bad(format!("page size {n}"))),
        };
        let usable = page_size - bytes[20] as usize;
        if usable < 480 {
            return Err(bad("usable page size below 480"));
        }
        Ok(Database {
            bytes,
            page_size,
            usable,
        })
    }

    fn page(&self, n: u32) -> Result<&'a [u8], SqliteError> {
        let start = (n as usize)
            .checked_sub(1)
            .ok_or_else(|| bad("page 0"))?
            .checked_mul(self.page_size)
            .ok_or_else(|| bad("page number"))?;
        self.bytes
            .get(start..start + self.page_size)
            .ok_or_else(|| bad(format!("page {n} past the end of the file")))
    }

    fn pages(&self) -> usize {
        self.bytes.len() / self.page_size
    }

    /// Every row of the table named `name`.
    pub fn table(&self, name: &str) -> Result<Vec<Vec<Value>>, SqliteError> {
        let schema = self.rows(1)?;
        let root = schema
            .iter()
            .find(|r| {
                matches!(r.first(), Some(Value::Text(t)) if t == "table")
                    && matches!(r.get(1), Some(Value::Text(t)) if t == name)
            })
            .and_then(|r| match r.get(3) {
                Some(Value::Int(p)) => u32::try_from(*p).ok(),
                _ => None,
            })
            .ok_or_else(|| bad(format!("no table {name}")))?;
        self.rows(root)
    }

    /// The rows of the table b-tree rooted at `root`, in rowid order.
    fn rows(&self, root: u32) -> Result<Vec<Vec<Value>>, SqliteError> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        let mut visited = 0usize;
        while let Some(n) = stack.pop() {
            visited += 1;
            if visited > self.pages() {
                return Err(bad("the b-tree has a loop"));
            }
            let page = self.page(n)?;
            let head = if n == 1 { 100 } else { 0 };
            let kind = *page.get(head).ok_or_else(|| bad("short page"))?;
            let cells = u16::from_be_bytes([page[head + 3], page[head + 4]]) as usize;
            let header_len = match kind {
                0x0d => 8,
                0x05 => 12,
                k => return Err(bad(format!("page {n}: not a table b-tree page ({k:#x})"))),
            };
            let pointers = head + header_len;
            let mut children = Vec::new();
            for i in 0..cells {
                let at = pointers + 2 * i;
                let off = u16::from_be_bytes([
                    *page.get(at).ok_or_else(|| bad("short cell pointers"))?,
                    *page.get(at + 1).ok_or_else(|| bad("short cell pointers"))?,
                ]) as usize;
                let cell = page.get(off..).ok_or_else(|| bad("cell past its page"))?;
                if kind == 0x05 {
                    let child = cell.get(..4).ok_or_else(|| bad("short cell"))?;
                    children.push(u32::from_be_bytes([child[0], child[1], child[2], child[3]]));
                } else {
                    out.push(self.record(cell)?);
                }
            }
            if kind == 0x05 {
                let r = page
                    .get(head + 8..head + 12)
                    .ok_or_else(|| bad("short page"))?;
                children.push(u32::from_be_bytes([r[0], r[1], r[2], r[3]]));
                // Left to right: the stack pops the last pushed first.
                stack.extend(children.into_iter().rev());
            }
        }
        Ok(out)
    }

    /// A leaf cell's record, its overflow pages followed.
    fn record(&self, cell: &[u8]) -> Result<Vec<Value>, SqliteError> {
        let (size, a) = varint(cell).ok_or_else(|| bad("short cell"))?;
        let (_rowid, b) = varint(&cell[a..]).ok_or_else(|| bad("short cell"))?;
        let size = size as usize;
        if size > self.bytes.len() {
            return Err(bad("record larger than the file"));
        }
        let u = self.usable;
        let x = u - 35;
        let local = if size <= x {
            size
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + ((size - m) % (u - 4));
            if k <= x {
                k
            } else {
                m
            }
        };
        let body = &cell[a + b..];
        let mut payload = body.get(..local).ok_or_else(|| bad("short cell"))?.to_vec();
        if local < size {
            let p = body
                .get(local..local + 4)
                .ok_or_else(|| bad("short cell"))?;
            let mut next = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
            let mut hops = 0;
            while payload.len() < size {
                hops += 1;
                if next == 0 || hops > self.pages() {
                    return Err(bad("broken overflow chain"));
                }
                let page = self.page(next)?;
                next = u32::from_be_bytes([page[0], page[1], page[2], page[3]]);
                let take = (size - payload.len()).min(u - 4);
                payload.extend_from_slice(&page[4..4 + take]);
            }
        }
        values(&payload)
    }
}

fn values(p: &[u8]) -> Result<Vec<Value>, SqliteError> {
    let (header_len, mut at) = varint(p).ok_or_else(|| bad("short record"))?;
    let header_len = header_len as usize;
    let mut types = Vec::new();
    while at < header_len {
        let (t, n) = varint(p.get(at..).unwrap_or_default()).ok_or_else(|| bad("short record"))?;
        types.push(t);
        at += n;
    }
    let mut at = header_len;
    let mut out = Vec::new();
    for t in types {
        let take = |at: &mut usize, n: usize| -> Result<&[u8], SqliteError> {
            let s = p.get(*at..*at + n).ok_or_else(|| bad("short record"))?;
            *at += n;
            Ok(s)
        };
        let int = |s: &[u8]| -> i64 {
            let mut v: i64 = if s[0] & 0x80 != 0 { -1 } else { 0 };
            for &b in s {
                v = (v << 8) | b as i64;
            }
            v
        };
        out.push(match t {
            0 => Value::Null,
            1..=6 => {
                let n = [1, 2, 3, 4, 6, 8][t as usize - 1];
                Value::Int(int(take(&mut at, n)?))
            }
            7 => {
                let s = take(&mut at, 8)?;
                Value::Real(f64::from_be_bytes(s.try_into().unwrap_or_default()))
            }
            8 => Value::Int(0),
            9 => Value::Int(1),
            t if t >= 12 && t % 2 == 0 => {
                Value::Blob(take(&mut at, (t as usize - 12) / 2)?.to_vec())
            }
            t if t >= 13 => Value::Text(
                String::from_utf8_lossy(take(&mut at, (t as usize - 13) / 2)?).into_owned(),
            ),
            t => return Err(bad(format!("serial type {t}"))),
        });
    }
    Ok(out)
}
