//! `var generate`: images of one class as PNG files.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;

use var_web::config::SamplingParams;
use var_web::error::{Result, VarError};
use var_web::generate::generate;
use var_web::model::Model;
use var_web::picture::write_png;
use var_web::readback::read_f32;

use super::progress::scale_bar;
use super::sampling::{SamplingArgs, check_class, load_model};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (config.json + safetensors); default: the shipped Fashion-MNIST model.
    #[arg(long, default_value = var_web::DEFAULT_MODEL_DIR)]
    model: PathBuf,
    /// Class index (see the model's config.json for names).
    #[arg(long)]
    class: usize,
    /// Images to generate (seeds seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Output directory; one PNG per image.
    #[arg(long)]
    out: PathBuf,
}

impl Args {
    pub fn run(self, device: &Device) -> Result<ExitCode> {
        let (model, params) = load_model(&self.model, device, &self.sampling)?;
        check_class(&model, self.class)?;
        if self.count == 0 {
            return Err(VarError::InvalidArgument(
                "--count must be at least 1".into(),
            ));
        }
        std::fs::create_dir_all(&self.out).map_err(|e| VarError::io(&self.out, e))?;
        let size = model.config.image_size;
        let k = model.config.num_scales();
        for i in 0..self.count {
            let seed = params.seed.wrapping_add(i as u64);
            let pb = scale_bar(k, &format!("image {}/{} (seed {seed})", i + 1, self.count));
            let p = SamplingParams {
                seed,
                ..params.clone()
            };
            let img = pollster::block_on(generate(&model, &[self.class], &p, None, |_| {
                pb.inc(1);
                ControlFlow::Continue(())
            }))?;
            pb.finish_and_clear();
            let pixels = pollster::block_on(read_f32(img))?;
            let rgb = Model::to_rgb8(&pixels, 1, size).remove(0);
            let path = self.out.join(format!("class{}_seed{seed}.png", self.class));
            write_png(&path, &rgb, size, size)?;
            println!("{}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}
