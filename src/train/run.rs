//! What every training run shares: its directory (`checkpoint/`, written atomically, and
//! `log.csv`), the seeded batch order that makes resuming exact, and the optimizer state's
//! round trip.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::ModelConfig;
use crate::error::{Result, VarError};
use crate::files::write_files_atomically;
use crate::modeldir::CONFIG_FILE;
use crate::rng::Rng;

pub const CHECKPOINT: &str = "checkpoint";
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub const STATE_FILE: &str = "state.json";
pub const LOG_FILE: &str = "log.csv";

/// A run directory. Only `checkpoint/` matters for resuming; everything else (log, plots,
/// sample grids) is derived and may be rewritten.
pub struct RunDir {
    pub out: PathBuf,
}

impl RunDir {
    pub fn new(out: &Path) -> Self {
        Self {
            out: out.to_path_buf(),
        }
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.out.join(CHECKPOINT)
    }

    /// The checkpoint directory, first put back in place if a crash left it moved aside
    /// (`files::recover_dir`; a failure there shows as the read's own error).
    fn recovered(&self) -> PathBuf {
        let dir = self.checkpoint();
        let _ = crate::files::recover_dir(&dir);
        dir
    }

    /// Refuses to start a fresh run over an existing one.
    pub fn refuse_existing(&self) -> Result<()> {
        if self.recovered().exists() {
            return Err(VarError::InvalidArgument(format!(
                "{} already holds a run: pass --resume to continue it or choose another --out",
                self.out.display()
            )));
        }
        Ok(())
    }

    /// One file of the last checkpoint.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.recovered().join(name);
        std::fs::read(&p).map_err(|e| VarError::io(&p, e))
    }

    pub fn read_config(&self) -> Result<ModelConfig> {
        read_config(&self.recovered())
    }

    pub fn read_state<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.read(STATE_FILE)?).map_err(|e| VarError::Json {
            path: self.checkpoint().join(STATE_FILE).display().to_string(),
            message: e.to_string(),
        })
    }

    /// Replaces the checkpoint (`files`, the optimizer state and the step state), all files or
    /// none.
    pub fn save(
        &self,
        files: &[(&str, &[u8])],
        optimizer: &[u8],
        state: &impl Serialize,
    ) -> Result<()> {
        let state = serde_json::to_vec_pretty(state).expect("plain JSON");
        let mut files = files.to_vec();
        files.push((OPTIMIZER_FILE, optimizer));
        files.push((STATE_FILE, &state));
        write_files_atomically(&self.checkpoint(), &files)
    }

    /// The CSV log, appended to. A run starting at step 0 writes `header`; a resumed run first
    /// drops the rows logged after its checkpoint (an interrupted run logs steps that resuming
    /// repeats), so every step appears once, and a row a crash cut short (no line end, or
    /// fewer fields than the header).
    pub fn log(&self, header: &str, step: usize) -> Result<Log> {
        std::fs::create_dir_all(&self.out).map_err(|e| VarError::io(&self.out, e))?;
        let path = self.out.join(LOG_FILE);
        let mut kept = format!("{header}\n");
        let fields = header.split(',').count();
        if step > 0
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            for line in text.split_inclusive('\n').skip(1) {
                let Some(row) = line.strip_suffix('\n') else {
                    continue; // the last row, cut short
                };
                let logged = row.split(',').next().and_then(|s| s.parse::<usize>().ok());
                if logged.is_some_and(|s| s <= step) && row.split(',').count() == fields {
                    kept.push_str(row);
                    kept.push('\n');
                }
            }
        }
        crate::files::write_atomically(&path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| VarError::io(&path, e))?;
        Ok(Log { file, path })
    }
}

/// `config.json` of a checkpoint or model directory.
pub fn read_config(dir: &Path) -> Result<ModelConfig> {
    let p = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| VarError::io(&p, e))?;
    ModelConfig::from_json(&text, &p.display().to_string())
}

pub struct Log {
    file: std::fs::File,
    path: PathBuf,
}

impl Log {
    pub fn row(&mut self, line: &str) -> Result<()> {
        writeln!(self.file, "{line}").map_err(|e| VarError::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The training examples of step `step`: a fresh permutation per epoch, drawn from the seed,
/// so a resumed run sees exactly the batches an uninterrupted one would.
pub fn batch_indices(n: usize, batch: usize, step: usize, seed: u64) -> Vec<usize> {
    let per_epoch = (n / batch).max(1);
    let (epoch, k) = (step / per_epoch, step % per_epoch);
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
        .into_iter()
        .cycle()
        .skip(k * batch)
        .take(batch)
        .collect()
}

/// Checks the common arguments of every trainer.
pub fn check_schedule(batch: usize, steps: usize, lr: f64) -> Result<()> {
    if batch == 0 || steps == 0 || !lr.is_finite() || lr <= 0.0 {
        return Err(VarError::InvalidArgument(
            "--batch and --steps must be at least 1 and --lr positive".into(),
        ));
    }
    Ok(())
}

/// The error for an optimizer state that does not (de)serialise.
pub fn optimizer_error(run: &RunDir, e: impl std::fmt::Debug) -> VarError {
    VarError::InvalidArgument(format!(
        "{}: the optimizer state does not load or save ({e:?})",
        run.checkpoint().join(OPTIMIZER_FILE).display()
    ))
}

/// Refuses a non-finite loss, pointing at the way out.
pub fn check_loss(loss: f32, step: usize) -> Result<()> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(VarError::InvalidArgument(format!(
            "the loss became {loss} at step {step}; lower --lr and resume from the last checkpoint"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_each_epoch_once() {
        let mut seen: Vec<usize> = (0..5).flat_map(|s| batch_indices(10, 2, s, 7)).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_ne!(batch_indices(10, 2, 0, 7), batch_indices(10, 2, 5, 7));
        // A batch larger than the data wraps around instead of panicking.
        assert_eq!(batch_indices(3, 5, 0, 1).len(), 5);
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_resumed_log_keeps_whole_rows_up_to_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        // Step 3's row was cut short by a crash (no line end); step 2's has a field missing.
        std::fs::write(dir.path().join(LOG_FILE), "step,loss\n1,0.5\n2\n3,0.2").unwrap();
        let mut log = run.log("step,loss", 3).unwrap();
        log.row("4,0.1").unwrap();
        drop(log);
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(text, "step,loss\n1,0.5\n4,0.1\n");
    }
}
