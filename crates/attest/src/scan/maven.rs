//! Java archives: each `META-INF/maven/<group>/<artifact>/pom.properties`
//! inside a jar, war or ear (shaded jars name several).

use crate::files::ImageFiles;
use crate::package::{purl, Ecosystem, Package};

pub fn scan(files: &dyn ImageFiles, jars: &[String]) -> Vec<Package> {
    let mut out = Vec::new();
    for path in jars {
        match scan_jar(files, path) {
            Ok(found) => out.extend(found),
            Err(e) => tracing::warn!("sbom: reading {path} as a Java archive: {e}"),
        }
    }
    out
}

fn scan_jar(files: &dyn ImageFiles, path: &str) -> std::io::Result<Vec<Package>> {
    let mut f = files.open(path)?;
    let mut out = Vec::new();
    for e in super::zip::entries(&mut *f)? {
        if !(e.name.starts_with("META-INF/maven/") && e.name.ends_with("/pom.properties")) {
            continue;
        }
        let bytes = super::zip::read_entry(&mut *f, &e)?;
        let text = String::from_utf8_lossy(&bytes);
        let prop = |k: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(key, _)| key.trim() == k)
                .map(|(_, v)| v.trim().to_string())
        };
        let (Some(group), Some(artifact), Some(version)) =
            (prop("groupId"), prop("artifactId"), prop("version"))
        else {
            continue;
        };
        out.push(Package {
            ecosystem: Ecosystem::Maven,
            name: format!("{group}:{artifact}"),
            purl: purl("maven", Some(&group), &artifact, &version, &[]),
            version,
            license: None,
            supplier: None,
            found_in: format!("{path}!/{}", e.name),
            files: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::scan::testing::put;

    /// A jar with one stored entry, as `zip -0` writes it.
    fn jar(name: &str, body: &[u8]) -> Vec<u8> {
        let crc = 0u32; // not checked by the reader
        let mut out = Vec::new();
        let local = |out: &mut Vec<u8>| {
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend(crc.to_le_bytes());
            out.extend((body.len() as u32).to_le_bytes());
            out.extend((body.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(body);
        };
        local(&mut out);
        let cd_offset = out.len() as u32;
        out.extend(0x0201_4b50u32.to_le_bytes());
        out.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend(crc.to_le_bytes());
        out.extend((body.len() as u32).to_le_bytes());
        out.extend((body.len() as u32).to_le_bytes());
        out.extend((name.len() as u16).to_le_bytes());
        out.extend([0u8; 12]);
        out.extend(0u32.to_le_bytes());
        out.extend(name.as_bytes());
        let cd_size = out.len() as u32 - cd_offset;
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0, 0, 0, 0, 1, 0, 1, 0]);
        out.extend(cd_size.to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend([0, 0]);
        out
    }

    #[test]
    fn pom_properties_in_a_jar() {
        let d = tempfile::tempdir().unwrap();
        put(
            d.path(),
            "/app/lib/guava.jar",
            &jar(
                "META-INF/maven/com.google.guava/guava/pom.properties",
                b"#Generated\nversion=32.1.2-jre\ngroupId=com.google.guava\nartifactId=guava\n",
            ),
        );
        put(d.path(), "/app/lib/broken.jar", b"not a zip");
        let inv = crate::scan::scan(&crate::files::DirFiles::new(d.path()));
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(
            inv.packages[0].purl,
            "pkg:maven/com.google.guava/guava@32.1.2-jre"
        );
    }
}
