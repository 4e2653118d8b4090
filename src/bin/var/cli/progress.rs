//! Progress on stderr: a spinner for work without steps, bars for scales and training steps,
//! and lines printed above them.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A line above the progress bar, or on stderr when the bar is hidden (not a terminal: a
/// training run in the background still logs its checkpoints).
pub fn say(pb: &ProgressBar, line: String) {
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

pub fn scale_bar(len: usize, what: &str) -> ProgressBar {
    let pb = bar(len, "{msg} [{bar:30}] {pos}/{len} scales {elapsed}");
    pb.set_message(what.to_string());
    pb
}

/// The bar of the three trainers: the run's optimizer steps, its latest losses as the message.
pub fn step_bar(steps: usize) -> ProgressBar {
    bar(steps, "{bar:30} {pos}/{len} steps {elapsed}<{eta} {msg}")
}

fn bar(len: usize, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    pb
}
