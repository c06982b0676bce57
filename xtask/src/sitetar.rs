//! `{tar:DIR}`: an ordinary ustar archive of a directory, for images that read files from a disk
//! (the HTTP demo's site).

use std::{
    fs,
    path::{Path, PathBuf},
};

use tar::{Builder, EntryType, Header};

/// Tar's block size: the archive's length is a multiple of it.
const BLOCK: usize = 512;

/// Every regular file under `dir`, as `(path relative to dir with `/` separators, full path)`,
/// sorted by relative path; directories are walked, other file types skipped.
pub fn files(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = fs::read_dir(&d).map_err(|e| format!("reading {}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", d.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .expect("walked from dir")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The archive of the regular files under `dir`: ustar headers (mode 0644, owner 0, time 0, so
/// the same files give the same bytes), the end-of-archive blocks, padded to a multiple of 512
/// bytes.
pub fn archive(dir: &Path) -> Result<Vec<u8>, String> {
    let mut builder = Builder::new(Vec::new());
    for (rel, path) in files(dir)? {
        let data = fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut header = Header::new_ustar();
        header
            .set_path(&rel)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        header.set_entry_type(EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        builder
            .append(&header, data.as_slice())
            .map_err(|e| format!("archiving {}: {e}", path.display()))?;
    }
    let mut bytes = builder
        .into_inner()
        .map_err(|e| format!("finishing the archive of {}: {e}", dir.display()))?;
    bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
    Ok(bytes)
}

/// Writes the archive of `dir` to `out` (creating its directory).
pub fn write(dir: &Path, out: &Path) -> Result<(), String> {
    let bytes = archive(dir)?;
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    fs::write(out, bytes).map_err(|e| format!("writing {}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn archives_every_file_as_ustar() {
        let dir = std::env::temp_dir().join(format!("vireo-sitetar-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("docs/deep")).unwrap();
        fs::write(dir.join("index.html"), b"<p>hi</p>").unwrap();
        fs::write(dir.join("docs/deep/a.txt"), vec![7u8; 1000]).unwrap();
        let long = "x".repeat(90);
        fs::create_dir_all(dir.join(&long)).unwrap();
        fs::write(dir.join(&long).join("long-name.css"), b"a{}").unwrap();
        let bytes = archive(&dir).unwrap();
        assert_eq!(bytes.len() % BLOCK, 0);
        assert_eq!(archive(&dir).unwrap(), bytes, "deterministic");
        let mut read = Vec::new();
        for entry in tar::Archive::new(bytes.as_slice()).entries().unwrap() {
            let mut entry = entry.unwrap();
            assert_eq!(&entry.header().as_ustar().unwrap().magic, b"ustar\0");
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            read.push((path, data));
        }
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(
            read,
            [
                ("docs/deep/a.txt".to_string(), vec![7u8; 1000]),
                ("index.html".to_string(), b"<p>hi</p>".to_vec()),
                (format!("{long}/long-name.css"), b"a{}".to_vec()),
            ]
        );
    }
}
