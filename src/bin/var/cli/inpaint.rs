//! `var inpaint`: regenerate the white part of a mask over an image.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;

use var_web::edit::{describe_mask, feather_px, inpaint, keep_grid, keep_original};
use var_web::error::Result;
use var_web::files::write_atomically;
use var_web::model::Model;
use var_web::picture::{overlay_mask, read_mask, read_picture, side_by_side, unfit_rgb, write_png};
use var_web::readback::read_f32;

use super::progress::scale_bar;
use super::sampling::{SamplingArgs, check_class, load_model};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory; default: the shipped Fashion-MNIST model.
    #[arg(long, default_value = var_web::DEFAULT_MODEL_DIR)]
    model: PathBuf,
    /// The source picture (PNG or JPEG, any size): fitted to the model's resolution as its
    /// training images were (config.json's `fit`; by default its centred square, resized).
    #[arg(long)]
    image: PathBuf,
    /// The mask, as large as the image: white = generate, black = keep, read by luminance
    /// (above 127 generates; alpha is ignored). The page's "Save mask" writes this format.
    #[arg(long)]
    mask: PathBuf,
    /// Out-painting: white = keep, black = generate.
    #[arg(long)]
    invert: bool,
    /// Generate under this class (class-conditional editing); default: the null class.
    #[arg(long)]
    class: Option<usize>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The edited image (PNG), in the source's size and alignment: the model's result mapped
    /// back through the fit (see --model-size).
    #[arg(long)]
    out: PathBuf,
    /// Write --out at the model's resolution, as the model made it, instead of in the
    /// source's geometry.
    #[arg(long)]
    model_size: bool,
    /// Keep the source's pixels outside the mask, blended into the result over a seam a
    /// sixteenth of the image wide (off by default: the reference returns the decoder's
    /// whole image, whose kept region is the source as the VQ-VAE reconstructs it).
    #[arg(long)]
    keep_original: bool,
    /// Also write source | mask | reconstruction | result side by side to this PNG.
    #[arg(long)]
    sheet: Option<PathBuf>,
}

impl Args {
    pub fn run(self, device: &Device) -> Result<ExitCode> {
        let (model, params) = load_model(&self.model, device, &self.sampling)?;
        if let Some(c) = self.class {
            check_class(&model, c)?;
        }
        let size = model.config.image_size;
        let side = *model.config.patch_nums.last().expect("validated");
        // The source is fitted as the training images were (config.json's `fit`).
        let rule = model.config.fit_rule();
        let picture = read_picture(&self.image, size, rule)?;
        let mut generate_px = read_mask(&self.mask, size, picture.original, rule)?;
        if self.invert {
            generate_px.iter_mut().for_each(|g| *g = !*g);
        }
        eprintln!("{}: {}", self.image.display(), picture.describe(size, rule));
        eprintln!(
            "mask: {}",
            describe_mask(&keep_grid(&generate_px, size, side)?)?
        );
        // Without --class the null class (index num_classes) generates unconditionally.
        let label = self.class.unwrap_or(model.config.var.num_classes);
        let pb = scale_bar(model.config.num_scales(), "in-painting");
        let done = pollster::block_on(inpaint(
            &model,
            &picture.rgb,
            &generate_px,
            label,
            &params,
            |_| {
                pb.inc(1);
                ControlFlow::Continue(())
            },
        ))?;
        pb.finish_and_clear();
        let mut result =
            Model::to_rgb8(&pollster::block_on(read_f32(done.image))?, 1, size).remove(0);
        if self.keep_original {
            let feather = feather_px(size);
            result = keep_original(&picture.rgb, &result, &generate_px, size, 3, feather)?;
            eprintln!("kept the source's pixels outside the mask (a {feather} px seam)");
        }
        if self.model_size {
            write_png(&self.out, &result, size, size)?;
        } else {
            let back = unfit_rgb(&result, size, rule, &picture.source);
            let (w, h) = back.dimensions();
            write_png(&self.out, back.as_raw(), w as usize, h as usize)?;
        }
        println!("{}", self.out.display());
        if let Some(sheet) = &self.sheet {
            let recon = pollster::block_on(read_f32(done.source.reconstruction(&model)))?;
            let panels = [
                picture.rgb.clone(),
                overlay_mask(&picture.rgb, &generate_px),
                Model::to_rgb8(&recon, 1, size).remove(0),
                result,
            ];
            write_atomically(sheet, &side_by_side(&panels, size)?)?;
            println!("{}", sheet.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}
