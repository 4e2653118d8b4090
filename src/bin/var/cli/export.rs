//! `var export-fashion-mnist`: Fashion-MNIST written out as an image folder.

use std::path::PathBuf;
use std::process::ExitCode;

use var_web::error::Result;
use var_web::train::data::{DEFAULT_DIR, FashionMnist, Split, folder};

#[derive(clap::Args)]
pub struct Args {
    /// The folder to write (`<class>/<index>.png`).
    #[arg(long)]
    out: PathBuf,
    /// Folder with Fashion-MNIST's gzip IDX files.
    #[arg(long, default_value = DEFAULT_DIR)]
    data: PathBuf,
    /// Images per class (the first of the split, in dataset order).
    #[arg(long, default_value_t = 100)]
    per_class: usize,
    /// Labels to write, e.g. 0,1,7 (default: all ten).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<usize>,
    /// Which split to read: train or test.
    #[arg(long, default_value = "train", value_parser = ["train", "test"])]
    split: String,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let split = if self.split == "test" {
            Split::Test
        } else {
            Split::Train
        };
        let data = FashionMnist::load(&self.data, split)?;
        let n = folder::write_fashion_mnist(&data, &self.out, self.per_class, &self.classes)?;
        eprintln!("wrote {n} images to {}", self.out.display());
        Ok(ExitCode::SUCCESS)
    }
}
