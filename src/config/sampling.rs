//! How tokens are drawn: the parameters of the sampler (`crate::sampler` has the algorithms).

use serde::{Deserialize, Serialize};

use crate::error::{Result, VarError};

/// How tokens are drawn at every scale.
///
/// The one sampling-parameter type: the generation loop takes it, `config.json` stores a
/// model's recommended values of it (`ModelConfig::sampling`), the page sends it as JSON
/// over the wasm boundary (absent `temperature`, `more_smooth` and `seed` take their
/// defaults), and the CLI's flags override a model's recommendation field by field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// Classifier-free guidance strength; the effective strength grows linearly from 0 at the
    /// first scale to `cfg` at the last.
    pub cfg: f32,
    /// Keep only the k most likely tokens (ties kept); 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p`; in (0, 1].
    pub top_p: f32,
    /// Logits are divided by this before filtering (1 = the reference).
    #[serde(default = "one")]
    pub temperature: f32,
    /// The reference's `more_smooth`: code vectors are a Gumbel-softmax blend of the codebook.
    #[serde(default)]
    pub more_smooth: bool,
    #[serde(default)]
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            cfg: 4.0,
            top_k: 900,
            top_p: 0.95,
            temperature: 1.0,
            more_smooth: false,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// These settings with another seed (a model's recommendation for one image).
    pub fn with_seed(&self, seed: u64) -> Self {
        Self {
            seed,
            ..self.clone()
        }
    }

    /// Greedy decoding (top-k = 1), deterministic whatever the seed.
    pub fn greedy(cfg: f32) -> Self {
        Self {
            cfg,
            top_k: 1,
            top_p: 1.0,
            ..Self::default()
        }
    }

    /// One sentence per out-of-range value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(VarError::InvalidArgument(m));
        if !self.cfg.is_finite() || self.cfg < 0.0 {
            return bad(format!(
                "cfg must be a finite number >= 0 (got {})",
                self.cfg
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top-p must lie in (0, 1] (got {})", self.top_p));
        }
        if !self.temperature.is_finite() || self.temperature <= 0.0 {
            return bad(format!(
                "temperature must be a finite number > 0 (got {})",
                self.temperature
            ));
        }
        Ok(())
    }
}

fn one() -> f32 {
    1.0
}

/// `config.json`'s `sampling`: a model's recommended settings, without the seed and the
/// temperature (those belong to one image, not to the model), as the files have always held.
pub(super) mod recommended {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::SamplingParams;

    #[derive(Serialize, Deserialize)]
    struct Stored {
        cfg: f32,
        top_k: usize,
        top_p: f32,
        #[serde(default)]
        more_smooth: bool,
    }

    pub fn serialize<S: Serializer>(p: &SamplingParams, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            cfg: p.cfg,
            top_k: p.top_k,
            top_p: p.top_p,
            more_smooth: p.more_smooth,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SamplingParams, D::Error> {
        let s = Stored::deserialize(d)?;
        Ok(SamplingParams {
            cfg: s.cfg,
            top_k: s.top_k,
            top_p: s.top_p,
            more_smooth: s.more_smooth,
            ..SamplingParams::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_params_are_named() {
        let p = SamplingParams {
            top_p: 1.5,
            ..SamplingParams::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("top-p"));
        let p = SamplingParams {
            cfg: -1.0,
            ..SamplingParams::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("cfg"));
    }
}
