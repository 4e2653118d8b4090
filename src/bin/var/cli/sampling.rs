//! The sampling flags of `generate` and `inpaint`, and the model they sample from.

use std::path::Path;

use burn::tensor::Device;

use var_web::config::SamplingParams;
use var_web::error::{Result, VarError};
use var_web::model::Model;
use var_web::modeldir::{self, LoadOptions};

/// Sampling settings shared by `generate` and `inpaint`; unset ones take the model's
/// recommendation (its config.json).
#[derive(clap::Args)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Classifier-free guidance.
    #[arg(long)]
    cfg: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Gumbel-softmax code blending (the reference's more_smooth).
    #[arg(long)]
    smooth: bool,
}

impl SamplingArgs {
    fn params(&self, model: &Model) -> Result<SamplingParams> {
        let d = &model.config.sampling;
        let params = SamplingParams {
            cfg: self.cfg.unwrap_or(d.cfg),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            temperature: self.temperature,
            more_smooth: self.smooth || d.more_smooth,
            seed: self.seed,
        };
        params.validate()?;
        Ok(params)
    }
}

/// The model directory for inference (on our CPU kernels where they run), with these flags over its recommended settings.
pub fn load_model(
    dir: &Path,
    device: &Device,
    sampling: &SamplingArgs,
) -> Result<(Model, SamplingParams)> {
    let model = modeldir::load(&modeldir::resolve(dir)?, device, &LoadOptions::inference())?;
    let params = sampling.params(&model)?;
    Ok((model, params))
}

/// Refuses a class label the model has no embedding for.
pub fn check_class(model: &Model, class: usize) -> Result<()> {
    let num_classes = model.config.var.num_classes;
    if class >= num_classes {
        return Err(VarError::InvalidArgument(format!(
            "class {class} does not exist: this model has classes 0..{}",
            num_classes - 1
        )));
    }
    Ok(())
}
