//! Reading config.json and process.json: only regular files, only up to a
//! size limit, so a symlink to /dev/zero, a fifo or a huge file gives an
//! error instead of exhausting memory or blocking forever.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::SpecError;

/// The largest config.json or process.json vessel reads (real ones are a
/// few KiB; this leaves room for huge seccomp profiles).
pub const MAX_JSON_FILE_SIZE: u64 = 16 << 20;

/// Reads a JSON configuration file: it must be a regular file of at most
/// [`MAX_JSON_FILE_SIZE`] bytes. Errors name the file.
pub fn read_json_file(path: &Path) -> Result<Vec<u8>, SpecError> {
    read_limited(path, MAX_JSON_FILE_SIZE).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    // O_NONBLOCK: opening a fifo for reading would otherwise wait for a
    // writer. It has no effect on the regular file that is then read.
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    let t = meta.file_type();
    if !t.is_file() {
        let kind = if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_fifo() {
            "a fifo"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({kind})"),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the limit of {limit} bytes"),
        )
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    // The file may grow after fstat: never read past the limit.
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.json");
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(read_limited(&p, 2).unwrap(), b"{}");
        let e = read_limited(&p, 1).unwrap_err().to_string();
        assert!(e.contains("larger than the limit of 1 bytes"), "{e}");
        let e = read_json_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero") && e.contains("character device"),
            "{e}"
        );
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_json_file(&fifo).unwrap_err().to_string();
        assert!(e.contains("fifo"), "{e}");
        let e = read_json_file(d.path()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
    }
}
