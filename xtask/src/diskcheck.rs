//! After QEMU exits: checks a disk image against the writes the guest reported.
//!
//! A test image that writes a disk reports each completed operation on the serial line:
//!
//! ```text
//! vireo-disk: NAME write OFFSET LEN GENERATION
//! vireo-disk: NAME zero OFFSET LEN
//! ```
//!
//! (bytes, multiples of 512). Written data follows [`disk_pattern_byte`], the function the guest
//! writes with (`vireo::testing` re-exports it; both come from `vireo_kcore`). Replaying the reports in order gives the content
//! every 512-byte sector must have; every sector is compared, so a lost write (old content), a torn
//! write (a sector of mixed generations), and a stray write (data where none was reported) all show.

use std::path::Path;

use vireo_kcore::disk_pattern::disk_pattern_byte;

const SECTOR: u64 = 512;

/// What a sector must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Never written: zero, as the image was created.
    Untouched,
    /// Zeroed by a reported discard or write-zeroes.
    Zeroed,
    /// Written with this generation's pattern.
    Written(u64),
}

/// Checks `image` (the disk the guest knew as `name`) against `serial`; returns how many sectors
/// the reports covered.
pub fn verify(image: &Path, name: &str, serial: &str) -> Result<u64, String> {
    let data = std::fs::read(image).map_err(|e| format!("reading {}: {e}", image.display()))?;
    let sectors = data.len() as u64 / SECTOR;
    let mut expect = vec![Expect::Untouched; sectors as usize];
    let prefix = format!("vireo-disk: {name} ");
    let mut reported = 0;
    for line in serial.lines() {
        let Some(op) = line.trim().strip_prefix(prefix.as_str()) else {
            continue;
        };
        let words: Vec<&str> = op.split_whitespace().collect();
        let num = |i: usize| -> Result<u64, String> {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("bad disk report `{line}`"))
        };
        let (offset, len) = (num(1)?, num(2)?);
        let what = match words.first() {
            Some(&"write") => Expect::Written(num(3)?),
            Some(&"zero") => Expect::Zeroed,
            _ => return Err(format!("bad disk report `{line}`")),
        };
        if offset % SECTOR != 0
            || len % SECTOR != 0
            || offset
                .checked_add(len)
                .is_none_or(|end| end > data.len() as u64)
        {
            return Err(format!(
                "disk report `{line}` is outside the {}-byte image or not sector-aligned",
                data.len()
            ));
        }
        for s in offset / SECTOR..(offset + len) / SECTOR {
            expect[s as usize] = what;
        }
        reported += len / SECTOR;
    }
    for (s, e) in expect.iter().enumerate() {
        let start = s as u64 * SECTOR;
        let sector = &data[start as usize..(start + SECTOR) as usize];
        let bad = match e {
            Expect::Untouched | Expect::Zeroed => sector.iter().position(|&b| b != 0),
            Expect::Written(g) => {
                (0..SECTOR).position(|i| sector[i as usize] != disk_pattern_byte(*g, start + i))
            }
        };
        if let Some(i) = bad {
            let at = start + i as u64;
            let what = match e {
                Expect::Untouched => "never written, so zero".to_string(),
                Expect::Zeroed => "zeroed".to_string(),
                Expect::Written(g) => format!("generation {g}: {:#04x}", disk_pattern_byte(*g, at)),
            };
            return Err(format!(
                "disk {name}: byte {at} (sector {s}) is {:#04x}, expected {what}",
                data[at as usize]
            ));
        }
    }
    Ok(reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` to a fresh file and returns its path (removed when dropped).
    struct TempImage(std::path::PathBuf);

    impl Drop for TempImage {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn image(bytes: &[u8]) -> TempImage {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("vireo-diskcheck-{}-{n}.img", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        TempImage(p)
    }

    /// An image after `writes` (offset, length, generation), written the way the guest writes
    /// (`fill_disk_pattern`), so the checks below also show that it agrees with what is checked.
    fn written(len: usize, writes: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut d = vec![0; len];
        for &(off, n, g) in writes {
            vireo_kcore::disk_pattern::fill_disk_pattern(
                &mut d[off as usize..(off + n) as usize],
                g,
                off,
            );
        }
        d
    }

    #[test]
    fn replays_writes_in_order() {
        let d = written(8192, &[(0, 2048, 1), (1024, 1024, 2)]);
        let img = image(&d);
        let log = "vireo-disk: d write 0 2048 1\nnoise\nvireo-disk: d write 1024 1024 2\n";
        assert_eq!(verify(&img.0, "d", log), Ok(6));
    }

    #[test]
    fn finds_lost_torn_and_stray_writes() {
        let log = "vireo-disk: d write 0 1024 1\nvireo-disk: d write 0 1024 2\n";
        // Lost: the second write never landed.
        let img = image(&written(4096, &[(0, 1024, 1)]));
        assert!(verify(&img.0, "d", log).is_err());
        // Torn: half of a sector from each generation.
        let img = image(&written(4096, &[(0, 1024, 1), (0, 768, 2)]));
        assert!(verify(&img.0, "d", log).is_err());
        // Stray: data beyond the reported ranges.
        let img = image(&written(4096, &[(0, 1024, 2), (2048, 512, 3)]));
        assert!(
            verify(&img.0, "d", log)
                .unwrap_err()
                .contains("never written")
        );
        // Zeroed ranges must read zero.
        let img = image(&written(4096, &[(0, 1024, 2)]));
        assert!(verify(&img.0, "d", &format!("{log}vireo-disk: d zero 0 512\n")).is_err());
        // Other disks' reports are ignored; bad reports are errors.
        assert!(verify(&img.0, "d", &format!("{log}vireo-disk: e zero 0 512\n")).is_ok());
        assert!(verify(&img.0, "d", "vireo-disk: d write 1 512 1\n").is_err());
        assert!(verify(&img.0, "d", "vireo-disk: d write 4096 512 1\n").is_err());
    }
}
