//! The inventory as an SPDX 2.3 JSON document: the image, its operating
//! system, each package (purl, declared license, supplier, where it was
//! found) and the files its database says it owns.
//!
//! SPDX requires a SHA-1 for every File element. kiln does not read the
//! files' contents to make one (the scan reads package databases only),
//! so a file becomes a File element when its database records a SHA-1
//! (apk); the files of other databases are listed in their package's
//! comment, each with the digest its database records.

use crate::license;
use crate::package::Package;
use crate::scan::Inventory;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What names the document.
pub struct DocumentInfo<'a> {
    /// The image's name (its first destination, or "image").
    pub name: &'a str,
    /// RFC 3339 creation time (clamped by `--reproducible`).
    pub created: &'a str,
    /// `kiln-<version>`.
    pub tool: &'a str,
}

fn spdx_id(prefix: &str, text: &str, n: usize) -> String {
    format!("SPDXRef-{prefix}-{}-{n}", idstring(text))
}

fn supplier(p: &Package) -> String {
    match &p.supplier {
        // "Name <mail>" as SPDX's "Organization: Name (mail)".
        Some(s) if !s.contains('\n') => {
            let (name, mail) = match s.split_once('<') {
                Some((n, m)) => (n.trim(), Some(m.trim_end_matches('>').trim())),
                None => (s.trim(), None),
            };
            let name = name.replace(['(', ')'], "");
            match mail {
                Some(m) => format!("Organization: {name} ({m})"),
                None => format!("Organization: {name}"),
            }
        }
        _ => "NOASSERTION".into(),
    }
}

/// The document (a JSON value; serialised with sorted keys, so the same
/// inventory gives the same bytes).
pub fn document(inv: &Inventory, info: &DocumentInfo) -> Value {
    let mut packages = Vec::new();
    let mut files = Vec::new();
    let mut relationships = Vec::new();
    let mut refs: BTreeMap<String, String> = BTreeMap::new();
    let image_id = "SPDXRef-Image".to_string();
    packages.push(json!({
        "SPDXID": image_id,
        "name": info.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    }));
    relationships.push(json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    }));
    if let Some(os) = &inv.os {
        packages.push(json!({
            "SPDXID": "SPDXRef-OperatingSystem",
            "name": os.id,
            "versionInfo": os.version_id,
            "description": os.pretty_name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": "SPDXRef-OperatingSystem",
        }));
    }
    for (n, p) in inv.packages.iter().enumerate() {
        let id = spdx_id(
            "Package",
            &format!("{}-{}", p.ecosystem.purl_type(), p.name),
            n,
        );
        let declared = match &p.license {
            Some(l) => {
                let (expr, used) = license::expression(l);
                refs.extend(used);
                expr
            }
            None => "NOASSERTION".into(),
        };
        let with_sha1: Vec<_> = p
            .files
            .iter()
            .filter(|f| matches!(&f.checksum, Some(("SHA1", _))))
            .collect();
        let listed: Vec<String> = p
            .files
            .iter()
            .filter(|f| !matches!(&f.checksum, Some(("SHA1", _))))
            .map(|f| match &f.checksum {
                Some((algo, hex)) => format!("{} {algo}:{hex}", f.path),
                None => f.path.clone(),
            })
            .collect();
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": supplier(p),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": !with_sha1.is_empty(),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("found in {}", p.found_in),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        });
        if !listed.is_empty() {
            pkg["comment"] = format!(
                "Files (as {} lists them):\n{}",
                p.found_in,
                listed.join("\n")
            )
            .into();
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
        for f in with_sha1 {
            let file_id = format!("SPDXRef-File-{}", files.len());
            let (algo, hex) = f.checksum.clone().unwrap_or_default();
            files.push(json!({
                "SPDXID": file_id,
                "fileName": format!(".{}", f.path),
                "checksums": [{"algorithm": algo, "checksumValue": hex}],
                "licenseConcluded": "NOASSERTION",
                "copyrightText": "NOASSERTION",
            }));
            relationships.push(json!({
                "spdxElementId": id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": file_id,
            }));
        }
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": info.name,
        "creationInfo": {
            "created": info.created,
            "creators": [format!("Tool: {}", info.tool)],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !files.is_empty() {
        doc["files"] = files.into();
    }
    if !refs.is_empty() {
        doc["hasExtractedLicensingInfos"] = refs
            .into_iter()
            .map(|(id, text)| {
                json!({
                    "licenseId": id,
                    "name": id.trim_start_matches("LicenseRef-"),
                    "extractedText": format!("The license the package states as \"{text}\""),
                })
            })
            .collect::<Vec<_>>()
            .into();
    }
    // A namespace unique to this content: its own digest.
    let digest = crate::sha256_hex(doc.to_string().as_bytes());
    doc["documentNamespace"] =
        format!("https://kiln.invalid/spdx/{}-{digest}", idstring(info.name)).into();
    doc
}

/// `text` with every character SPDX ids refuse (all but letters, digits,
/// `.` and `-`) as `-`.
pub(crate) fn idstring(text: &str) -> String {
    text.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                true => c,
                false => '-',
            },
        )
        .collect()
}
