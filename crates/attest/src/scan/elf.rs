//! Just enough ELF to find a named section in an executable: the header,
//! the section headers and their names. Nothing else is read.

use std::io::SeekFrom;

/// A section's bytes are refused past this.
const MAX_SECTION: u64 = 16 << 20;

struct Header {
    is64: bool,
    le: bool,
    shoff: u64,
    shentsize: u64,
    shnum: u64,
    shstrndx: u64,
}

fn header(b: &[u8; 64]) -> Option<Header> {
    if b[..4] != *b"\x7fELF" {
        return None;
    }
    let is64 = b[4] == 2;
    let le = b[5] == 1;
    let u16_at = |i: usize| {
        let v = [b[i], b[i + 1]];
        (if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }) as u64
    };
    let u32_at = |i: usize| {
        let v = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        (if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }) as u64
    };
    let u64_at = |i: usize| {
        let v: [u8; 8] = b[i..i + 8].try_into().unwrap_or_default();
        if le {
            u64::from_le_bytes(v)
        } else {
            u64::from_be_bytes(v)
        }
    };
    Some(if is64 {
        Header {
            is64,
            le,
            shoff: u64_at(0x28),
            shentsize: u16_at(0x3a),
            shnum: u16_at(0x3c),
            shstrndx: u16_at(0x3e),
        }
    } else {
        Header {
            is64,
            le,
            shoff: u32_at(0x20),
            shentsize: u16_at(0x2e),
            shnum: u16_at(0x30),
            shstrndx: u16_at(0x32),
        }
    })
}

/// (name offset, file offset, size) of each section.
fn sections(
    f: &mut dyn crate::files::ReadSeek,
    h: &Header,
) -> std::io::Result<Vec<(u64, u64, u64)>> {
    let want = if h.is64 { 64 } else { 40 };
    if h.shentsize < want || h.shnum == 0 || h.shnum > 4096 {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(h.shoff))?;
    let mut table = vec![0u8; (h.shentsize * h.shnum) as usize];
    f.read_exact(&mut table)?;
    let rd = |b: &[u8], i: usize, n: usize| -> u64 {
        let s = &b[i..i + n];
        let mut v = 0u64;
        for k in 0..n {
            let byte = if h.le { s[n - 1 - k] } else { s[k] };
            v = (v << 8) | byte as u64;
        }
        v
    };
    Ok(table
        .chunks(h.shentsize as usize)
        .map(|e| match h.is64 {
            true => (rd(e, 0, 4), rd(e, 0x18, 8), rd(e, 0x20, 8)),
            false => (rd(e, 0, 4), rd(e, 0x10, 4), rd(e, 0x14, 4)),
        })
        .collect())
}

/// The bytes of each section named in `names` (in that order), or `None`
/// when the file is not ELF. Missing sections are `None` in the list.
pub fn find_sections(
    f: &mut dyn crate::files::ReadSeek,
    names: &[&str],
) -> std::io::Result<Option<Vec<Option<Vec<u8>>>>> {
    let mut head = [0u8; 64];
    if f.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    let Some(h) = header(&head) else {
        return Ok(None);
    };
    let list = sections(f, &h)?;
    let Some(&(_, str_off, str_size)) = list.get(h.shstrndx as usize) else {
        return Ok(Some(vec![None; names.len()]));
    };
    let strtab = read_at(f, str_off, str_size.min(1 << 20))?;
    let name_of = |off: u64| -> &[u8] {
        let rest = strtab.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
    };
    let mut out = Vec::new();
    for want in names {
        let found = list.iter().find(|(n, _, _)| name_of(*n) == want.as_bytes());
        out.push(match found {
            Some(&(_, off, size)) if size <= MAX_SECTION => Some(read_at(f, off, size)?),
            _ => None,
        });
    }
    Ok(Some(out))
}

fn read_at(f: &mut dyn crate::files::ReadSeek, off: u64, size: u64) -> std::io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(off))?;
    let mut out = vec![0u8; size as usize];
    f.read_exact(&mut out)?;
    Ok(out)
}

/// A minimal little-endian ELF64 file holding the given sections (tests).
#[cfg(test)]
pub fn build_elf64(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut strtab = vec![0u8];
    let mut names = Vec::new();
    for (n, _) in sections.iter().chain([(".shstrtab", &[][..])].iter()) {
        names.push(strtab.len() as u32);
        strtab.extend(n.as_bytes());
        strtab.push(0);
    }
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    let mut offsets = Vec::new();
    for (_, data) in sections {
        offsets.push((out.len() as u64, data.len() as u64));
        out.extend(*data);
    }
    offsets.push((out.len() as u64, strtab.len() as u64));
    out.extend(&strtab);
    let shoff = out.len() as u64;
    out.extend([0u8; 64]); // the null section
    for (i, (off, size)) in offsets.iter().enumerate() {
        let mut e = [0u8; 64];
        e[..4].copy_from_slice(&names[i].to_le_bytes());
        e[0x18..0x20].copy_from_slice(&off.to_le_bytes());
        e[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        out.extend(e);
    }
    out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    out[0x3c..0x3e].copy_from_slice(&((offsets.len() + 1) as u16).to_le_bytes());
    out[0x3e..0x40].copy_from_slice(&(offsets.len() as u16).to_le_bytes());
    out
}
