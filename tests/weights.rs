//! Loading refuses anything but an exact match, with a message naming the tensor; the
//! converter reads the configuration off official shapes.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;

use burn::tensor::Device;
use var_web::config::{ModelConfig, OFFICIAL_PATCH_NUMS, VarConfig, VqvaeConfig};
use var_web::convert::{ConvertOptions, convert_pth, infer_config};
use var_web::error::VarError;
use var_web::model::Model;
use var_web::modeldir::{self, LoadOptions};
use var_web::nn::Kernels;
use var_web::weights::TensorMap;
use var_web::weights::pth::PthFile;
use var_web::weights::pth::source::PthSource;

fn fixture_maps() -> (ModelConfig, TensorMap, TensorMap) {
    let config = common::fixture_model("mini").config;
    let to_map = |name: &str| {
        let f = PthFile::open(&common::fixture(name)).unwrap();
        let mut m = TensorMap::default();
        for k in f.keys() {
            if var_web::weights::is_recomputed_buffer(k) {
                continue;
            }
            m.insert(k, f.get(k).unwrap().shape.clone(), f.read_f32(k).unwrap());
        }
        m
    };
    (config, to_map("vae_tiny.pth"), to_map("var_mini.pth"))
}

fn load(config: &ModelConfig, vae: &mut TensorMap, var: &mut TensorMap) -> Result<Model, VarError> {
    Model::from_sources(config.clone(), vae, var, &Device::flex(), Kernels::Burn)
}

#[test]
fn complete_weights_load() {
    let (config, mut vae, mut var) = fixture_maps();
    load(&config, &mut vae, &mut var).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let (config, mut vae, mut var) = fixture_maps();
    var.remove("blocks.1.ffn.fc2.bias").unwrap();
    let err = load(&config, &mut vae, &mut var).unwrap_err().to_string();
    assert!(err.contains("blocks.1.ffn.fc2.bias"), "{err}");
}

#[test]
fn unexpected_tensor_is_named() {
    let (config, mut vae, mut var) = fixture_maps();
    vae.insert("decoder.extra.weight", vec![2], vec![0.0, 1.0]);
    let err = load(&config, &mut vae, &mut var).unwrap_err().to_string();
    assert!(err.contains("decoder.extra.weight"), "{err}");
}

#[test]
fn wrong_shape_is_named() {
    let (config, mut vae, mut var) = fixture_maps();
    let (_, v) = vae.remove("quantize.embedding.weight").unwrap();
    vae.insert("quantize.embedding.weight", vec![32, 16], v);
    let err = load(&config, &mut vae, &mut var).unwrap_err().to_string();
    assert!(
        err.contains("quantize.embedding.weight") && err.contains("[32, 16]"),
        "{err}"
    );
}

#[test]
fn pth_source_reads_the_same_values_as_the_map() {
    let f = PthFile::open(&common::fixture("var_mini.pth")).unwrap();
    let mut src = PthSource::new(&f);
    use var_web::weights::TensorSource;
    let v = src.take("pos_start", &[1, 1, 128]).unwrap();
    assert_eq!(v.len(), 128);
    let err = src.take("pos_start", &[1, 128]).unwrap_err().to_string();
    assert!(err.contains("pos_start"), "{err}");
}

#[test]
fn convert_refuses_wrong_patch_nums_and_mismatched_files() {
    let out = common::scratch("bad-pn").join("m");
    let err = convert_pth(
        &common::fixture("vae_tiny.pth"),
        &common::fixture("var_mini.pth"),
        &OFFICIAL_PATCH_NUMS,
        &out,
        &ConvertOptions::default(),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("pos_1LC"), "{err}");
    assert!(!out.exists(), "no output directory may be left behind");

    // A VQ-VAE file where the transformer file should be.
    let err = convert_pth(
        &common::fixture("vae_tiny.pth"),
        &common::fixture("vae_tiny.pth"),
        &[1, 2, 3, 4],
        &out,
        &ConvertOptions::default(),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("class_emb.weight"), "{err}");
    assert!(!out.exists());
}

#[test]
fn convert_refuses_truncated_and_non_zip_files() {
    let dir = common::scratch("bad-files");
    let bytes = std::fs::read(common::fixture("var_mini.pth")).unwrap();
    let truncated = dir.join("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let not_zip = dir.join("notzip.pth");
    std::fs::write(&not_zip, b"this is not a checkpoint").unwrap();
    for bad in [&truncated, &not_zip] {
        let out = dir.join("out");
        let err = convert_pth(
            &common::fixture("vae_tiny.pth"),
            bad,
            &[1, 2, 3, 4],
            &out,
            &ConvertOptions::default(),
            |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(bad.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
        assert!(!out.exists());
    }
}

/// The official checkpoints' keys and shapes (from the reference, `official-shapes.json`).
fn official_shapes() -> BTreeMap<String, BTreeMap<String, Vec<usize>>> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("official-shapes.json")).unwrap(),
    )
    .unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .filter_map(|(model, entry)| {
            let keys = entry.get("keys")?.as_object()?;
            Some((
                model.clone(),
                keys.iter()
                    .map(|(k, s)| {
                        let shape = s[0]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|d| d.as_u64().unwrap() as usize);
                        (k.clone(), shape.collect())
                    })
                    .collect(),
            ))
        })
        .collect()
}

#[test]
fn official_configs_are_read_off_the_shapes() {
    let shapes = official_shapes();
    let vae = &shapes["vae_ch160v4096z32"];
    let vae_shape = |k: &str| vae.get(k).cloned();
    for depth in [16, 20, 24, 30] {
        let var = &shapes[&format!("var_d{depth}")];
        let var_shape = |k: &str| var.get(k).cloned();
        let cfg = infer_config(&vae_shape, &var_shape, &OFFICIAL_PATCH_NUMS, "x").unwrap();
        assert_eq!(cfg.vqvae, VqvaeConfig::official(), "d{depth}");
        assert_eq!(cfg.var, VarConfig::official(depth), "d{depth}");
        assert_eq!(cfg.image_size, 256);
    }
    // d36: 512 px, its own scales, shared AdaLN.
    let var = &shapes["var_d36"];
    let var_shape = |k: &str| var.get(k).cloned();
    let pn = [1, 2, 3, 4, 6, 9, 13, 18, 24, 32];
    let cfg = infer_config(&vae_shape, &var_shape, &pn, "x").unwrap();
    assert!(cfg.var.shared_aln);
    assert_eq!(cfg.image_size, 512);
}

/// Hands out zeros of whatever shape the model asks for, and records what was asked.
struct Recorder(BTreeMap<String, Vec<usize>>);

impl var_web::weights::TensorSource for Recorder {
    fn take(&mut self, key: &str, shape: &[usize]) -> var_web::Result<Vec<f32>> {
        self.0.insert(key.to_string(), shape.to_vec());
        Ok(vec![0.0; shape.iter().product()])
    }
    fn unused(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Our loader asks for exactly the official d16 + VQ-VAE keys with the official shapes (the
/// buffers the reference recomputes excepted), so a real checkpoint loads with nothing missing
/// and nothing left over.
#[test]
fn key_table_covers_the_official_d16_checkpoints() {
    let shapes = official_shapes();
    let mut vae = Recorder(BTreeMap::new());
    let mut var = Recorder(BTreeMap::new());
    Model::from_sources(
        ModelConfig::official(16),
        &mut vae,
        &mut var,
        &Device::flex(),
        Kernels::Burn,
    )
    .unwrap();
    for (name, asked) in [("vae_ch160v4096z32", &vae.0), ("var_d16", &var.0)] {
        let official: BTreeMap<_, _> = shapes[name]
            .iter()
            .filter(|(k, _)| !var_web::weights::is_recomputed_buffer(k))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        assert_eq!(&official, asked, "{name}");
    }
}

/// Export is the inverse of load: a loaded model exports exactly the checkpoint's tensors
/// (same keys, shapes and values), and a saved model directory loads back to the same outputs.
#[test]
fn export_round_trips_the_checkpoint() {
    use var_web::nn::export::export_module;
    let model = common::fixture_model("mini");
    for (file, exported) in [
        ("vae_tiny.pth", export_module(&model.vqvae).unwrap()),
        ("var_mini.pth", export_module(&model.var).unwrap()),
    ] {
        let f = PthFile::open(&common::fixture(file)).unwrap();
        let keys: std::collections::BTreeSet<&str> = f
            .keys()
            .filter(|k| !var_web::weights::is_recomputed_buffer(k))
            .collect();
        let got: std::collections::BTreeSet<&str> =
            exported.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, got, "{file}");
        for (key, shape, values) in &exported {
            assert_eq!(&f.get(key).unwrap().shape, shape, "{key}");
            assert_eq!(&f.read_f32(key).unwrap(), values, "{key}");
        }
    }
    let dir = common::scratch("saved").join("model");
    modeldir::save(&model, &dir).unwrap();
    let again = modeldir::load(&dir, &Device::flex(), &LoadOptions::default()).unwrap();
    assert_eq!(again.config, model.config);
}

#[test]
fn written_checkpoints_read_back_exactly() {
    // Our torch.save writer (used by `var random-checkpoint`) against our reader, on the
    // reference fixture's tensors: same keys, shapes and values, and the converter accepts it.
    use var_web::weights::pth::write::write_state_dict;
    let dir = common::scratch("pth-write");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["vae_tiny.pth", "var_mini.pth"] {
        let original = PthFile::open(&common::fixture(name)).unwrap();
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = original
            .keys()
            .map(|k| {
                let shape = original.get(k).unwrap().shape.clone();
                (k.to_string(), shape, original.read_f32(k).unwrap())
            })
            .collect();
        let path = dir.join(name);
        write_state_dict(&path, &tensors).unwrap();
        let back = PthFile::open(&path).unwrap();
        assert_eq!(back.keys().count(), tensors.len());
        for (key, shape, values) in &tensors {
            assert_eq!(&back.get(key).unwrap().shape, shape, "{key}");
            assert_eq!(&back.read_f32(key).unwrap(), values, "{key}");
        }
    }
    let out = dir.join("model");
    convert_pth(
        &dir.join("vae_tiny.pth"),
        &dir.join("var_mini.pth"),
        &[1, 2, 3, 4],
        &out,
        &ConvertOptions::default(),
        |_| {},
    )
    .unwrap();
}

/// The converter on official-format files (the reference's key names, written by our
/// `torch.save` writer) that differ from what the architecture asks for: a renamed key and a
/// reshaped one are each refused by name, and nothing is written.
#[test]
fn convert_names_a_renamed_or_reshaped_official_key() {
    use var_web::weights::pth::write::write_state_dict;
    let dir = common::scratch("convert-tampered");
    std::fs::create_dir_all(&dir).unwrap();
    let read = |name: &str| -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let f = PthFile::open(&common::fixture(name)).unwrap();
        f.keys()
            .map(|k| {
                (
                    k.to_string(),
                    f.get(k).unwrap().shape.clone(),
                    f.read_f32(k).unwrap(),
                )
            })
            .collect()
    };
    let vae = dir.join("vae.pth");
    write_state_dict(&vae, &read("vae_tiny.pth")).unwrap();

    let renamed = "blocks.0.attn.mat_qkv.weight";
    let reshaped = "blocks.1.ffn.fc1.weight";
    let mut with_renamed = read("var_mini.pth");
    let entry = with_renamed.iter_mut().find(|t| t.0 == renamed).unwrap();
    entry.0 = "blocks.0.attn.qkv.weight".into();
    let mut with_reshaped = read("var_mini.pth");
    let entry = with_reshaped.iter_mut().find(|t| t.0 == reshaped).unwrap();
    let (rows, cols) = (entry.1[0], entry.1[1]);
    entry.1 = vec![rows / 2, cols * 2];

    for (file, tensors, named) in [
        ("renamed.pth", with_renamed, vec![renamed]),
        (
            "reshaped.pth",
            with_reshaped,
            vec![reshaped, "the model needs"],
        ),
    ] {
        let path = dir.join(file);
        write_state_dict(&path, &tensors).unwrap();
        let out = dir.join("out");
        let err = convert_pth(
            &vae,
            &path,
            &[1, 2, 3, 4],
            &out,
            &ConvertOptions::default(),
            |_| {},
        )
        .unwrap_err()
        .to_string();
        for word in named {
            assert!(err.contains(word), "{file}: {err}");
        }
        assert!(!out.exists(), "{file}: no output may be left behind");
    }
}
