//! Sharded model directories: `var convert` splits the tensors over bounded shards with a
//! manifest; the loader reads them back to the same model and refuses a shard that is
//! truncated, corrupt, misplaced or named like a path.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;

use burn::tensor::Device;
use var_web::config::SamplingParams;
use var_web::config::Storage;
use var_web::generate::generate;
use var_web::model::Model;
use var_web::modeldir::CONFIG_FILE;
use var_web::modeldir::staged::StagedModel;
use var_web::modeldir::{self, LoadOptions};
use var_web::readback::read_f32;
use var_web::weights::shards::{ImageMemory, MANIFEST_FILE, Manifest, Part, memory_budget};

const SMALL_SHARD: usize = 64 << 10;

fn manifest(dir: &Path) -> Manifest {
    Manifest::from_json(&std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap()).unwrap()
}

fn image(model: &Model) -> Vec<f32> {
    let params = SamplingParams {
        cfg: 2.0,
        top_k: 50,
        top_p: 0.9,
        seed: 3,
        ..SamplingParams::default()
    };
    let img = pollster::block_on(generate(model, &[1], &params, None, |_| {
        std::ops::ControlFlow::Continue(())
    }))
    .unwrap();
    pollster::block_on(read_f32(img)).unwrap()
}

#[test]
fn shards_are_bounded_and_load_to_the_same_model() {
    for storage in [Storage::F32, Storage::Int8] {
        let whole = common::convert_mini(&format!("whole-{storage:?}"), storage, None);
        let sharded =
            common::convert_mini(&format!("sharded-{storage:?}"), storage, Some(SMALL_SHARD));
        let m = manifest(&sharded);
        for part in [Part::Vqvae, Part::Var] {
            assert!(
                m.shards.iter().filter(|s| s.part == part).count() > 1,
                "{storage:?}: the fixture spans several {part:?} shards at 64 KiB"
            );
        }
        let tensors = &m.tensors[&Part::Var];
        for (index, shard) in m.shards.iter().enumerate() {
            let bytes = std::fs::read(sharded.join(&shard.file)).unwrap();
            assert_eq!(bytes.len() as u64, shard.bytes);
            // The file stays within the bound, unless the shard is one tensor (with its
            // scales) that is larger than the bound by itself.
            let held: Vec<(&String, u64)> = m.tensors[&shard.part]
                .iter()
                .filter(|(_, t)| t.shard == index)
                .map(|(n, t)| (n, t.length))
                .collect();
            let units = held.iter().filter(|(n, _)| !n.ends_with(".scales")).count();
            assert!(
                bytes.len() <= SMALL_SHARD || units == 1,
                "{} is {} bytes with {units} tensors",
                shard.file,
                bytes.len()
            );
        }
        // An int8 weight and its scales share a shard (the loader reads them together).
        for (name, t) in tensors {
            if let Some(s) = tensors.get(&format!("{name}.scales")) {
                assert_eq!(s.shard, t.shard, "{name}");
                assert_eq!(t.dtype, "I8");
            }
        }
        let a = modeldir::load(&whole, &Device::flex(), &LoadOptions::default()).unwrap();
        let b = modeldir::load(&sharded, &Device::flex(), &LoadOptions::default()).unwrap();
        assert_eq!(a.config, b.config);
        assert_eq!(
            image(&a),
            image(&b),
            "{storage:?}: same weights, same image"
        );
        // The manifest's offsets point at the tensors' bytes.
        let (name, t) = tensors.iter().next().unwrap();
        let file = std::fs::read(sharded.join(&m.shards[t.shard].file)).unwrap();
        let header = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        assert!(t.offset as usize >= 8 + header, "{name}");
    }
}

/// Reading a model as if stored at another precision (`var bench --model --precision`)
/// goes through the manifest of a sharded directory as through the files of an unsharded one.
#[test]
fn a_sharded_directory_reads_as_another_storage_like_an_unsharded_one() {
    let whole = common::convert_mini("as-whole", Storage::F32, None);
    let sharded = common::convert_mini("as-sharded", Storage::F32, Some(SMALL_SHARD));
    for storage in [Storage::F16, Storage::Int8] {
        let options = LoadOptions {
            read_as: Some(storage),
            ..LoadOptions::default()
        };
        let a = modeldir::load(&whole, &Device::flex(), &options).unwrap();
        let b = modeldir::load(&sharded, &Device::flex(), &options).unwrap();
        assert_eq!(b.config.storage, storage);
        assert_eq!(a.config, b.config);
        assert_eq!(
            image(&a),
            image(&b),
            "{storage:?}: same weights, same image"
        );
    }
    // And re-storing changes the weights: int8 gives another image than f32.
    let f32_model = modeldir::load(&sharded, &Device::flex(), &LoadOptions::default()).unwrap();
    let int8 = LoadOptions {
        read_as: Some(Storage::Int8),
        ..LoadOptions::default()
    };
    let int8_model = modeldir::load(&sharded, &Device::flex(), &int8).unwrap();
    assert_ne!(image(&f32_model), image(&int8_model));
}

fn refused(dir: &Path, change: impl FnOnce(&Path, &Manifest), needle: &str) {
    let copy = common::scratch(&format!("bad-{}", needle.replace(' ', "-"))).join("m");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    change(&copy, &manifest(&copy));
    let err = modeldir::load(&copy, &Device::flex(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

#[test]
fn damaged_shards_and_manifests_are_refused_by_name() {
    let dir = common::convert_mini("damage", Storage::Int8, Some(SMALL_SHARD));
    let m = manifest(&dir);
    let victim = m
        .shards
        .iter()
        .find(|s| s.part == Part::Var)
        .unwrap()
        .file
        .clone();
    let at = |d: &Path| d.join(&victim);

    // One flipped byte: the checksum names the shard.
    refused(
        &dir,
        |d, _| {
            let mut bytes = std::fs::read(at(d)).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
            std::fs::write(at(d), bytes).unwrap();
        },
        &format!("{victim}: its SHA-256 differs"),
    );
    // Cut short: the size names it.
    refused(
        &dir,
        |d, _| {
            let bytes = std::fs::read(at(d)).unwrap();
            std::fs::write(at(d), &bytes[..bytes.len() / 2]).unwrap();
        },
        "the download is incomplete",
    );
    // A missing shard file.
    refused(&dir, |d, _| std::fs::remove_file(at(d)).unwrap(), &victim);
    // A manifest that sends the reader outside the directory.
    refused(
        &dir,
        |d, m| {
            let mut m = m.clone();
            m.shards[0].file = "../config.json".into();
            std::fs::write(d.join(MANIFEST_FILE), m.to_json()).unwrap();
        },
        "is not a plain file name",
    );
    // A config.json of another version of the model (edited, or cached from before): the
    // manifest pins the config by its checksum.
    refused(
        &dir,
        |d, _| {
            let text = std::fs::read_to_string(d.join(CONFIG_FILE)).unwrap();
            std::fs::write(d.join(CONFIG_FILE), text.replacen("\n", "\n ", 1)).unwrap();
        },
        "config.json: its SHA-256 differs from the manifest's",
    );
    // A shard longer than the manifest says is not read at all.
    refused(
        &dir,
        |d, _| {
            let mut bytes = std::fs::read(at(d)).unwrap();
            bytes.extend_from_slice(&[0; 64]);
            std::fs::write(at(d), bytes).unwrap();
        },
        "more than the",
    );
    // A shard that is a link out of the model directory.
    #[cfg(unix)]
    refused(
        &dir,
        |d, _| {
            let outside = d.parent().unwrap().join("elsewhere.safetensors");
            std::fs::rename(at(d), &outside).unwrap();
            std::os::unix::fs::symlink(&outside, at(d)).unwrap();
        },
        "outside the model directory",
    );
    // A manifest whose tensor table disagrees with the shard (a tensor moved elsewhere).
    refused(
        &dir,
        |d, m| {
            let mut m = m.clone();
            let table = m.tensors.get_mut(&Part::Var).unwrap();
            let (name, entry) = table
                .iter()
                .next()
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap();
            let other = m
                .shards
                .iter()
                .position(|s| s.part == Part::Var && s.file != m.shards[entry.shard].file)
                .unwrap();
            table.get_mut(&name).unwrap().shard = other;
            table.get_mut(&name).unwrap().offset = 0;
            std::fs::write(d.join(MANIFEST_FILE), m.to_json()).unwrap();
        },
        "unlike the manifest",
    );
    // Shard by shard, as the page loads: in any order, each once, all before the model.
    let config = std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap();
    let shard = |i: usize| std::fs::read(dir.join(&m.shards[i].file)).unwrap();
    let mut staged =
        StagedModel::new(&config, m.clone(), &Device::flex(), &LoadOptions::default()).unwrap();
    let last = m.shards.len() - 1;
    staged.add_shard(last, &shard(last)).unwrap();
    let err = staged
        .add_shard(last, &shard(last))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("{}: was already added", m.shards[last].file)),
        "{err}"
    );
    let err = staged.add_shard(0, &shard(1)).unwrap_err().to_string();
    assert!(
        err.contains(&m.shards[0].file),
        "a shard handed over as another: {err}"
    );
    for i in 0..last - 1 {
        staged.add_shard(i, &shard(i)).unwrap();
    }
    assert_eq!(staged.missing(), [m.shards[last - 1].file.as_str()]);
    let err = staged.finish().err().unwrap().to_string();
    assert!(
        err.contains(&format!(
            "shards not loaded yet: {}",
            m.shards[last - 1].file
        )),
        "{err}"
    );
    // Not a manifest at all.
    refused(
        &dir,
        |d, _| std::fs::write(d.join(MANIFEST_FILE), "{\"format\": \"x\"}").unwrap(),
        "not a model manifest",
    );
}

#[test]
fn the_memory_budget_counts_int8_as_int8_on_a_gpu_only() {
    let dir = common::convert_mini("budget", Storage::Int8, Some(SMALL_SHARD));
    let m = manifest(&dir);
    let config = var_web::config::ModelConfig::from_json(
        &std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap(),
        CONFIG_FILE,
    )
    .unwrap();
    let gpu = memory_budget(&config, &m, true);
    let cpu = memory_budget(&config, &m, false);
    let int8: u64 = m.tensors[&Part::Var]
        .values()
        .filter(|t| t.dtype == "I8")
        .map(|t| t.length)
        .sum();
    assert!(int8 > 0);
    assert_eq!(cpu.weights_bytes - gpu.weights_bytes, 3 * int8);
    // f16 tensors are counted as the f32 they become.
    assert!(gpu.weights_bytes > m.bytes(None) - int8);
    let v = &config.var;
    assert_eq!(
        gpu.kv_cache_bytes,
        (v.depth * 2 * 2 * config.seq_len() * v.embed_dim * 4) as u64
    );
    assert!(gpu.total() > gpu.weights_bytes);
}

#[test]
fn a_batch_is_limited_by_the_gpus_largest_binding_or_the_cpus_memory() {
    let d16 = var_web::config::ModelConfig::official(16);
    let image = ImageMemory::of(&d16);
    // One image of d16: the KV cache of 2 rows over 16 layers and 680 tokens of width 1024,
    // and the decoder's widest map (160 channels at 256²) as the largest single buffer.
    assert_eq!(image.kv_cache_bytes, 16 * 2 * 2 * 680 * 1024 * 4);
    assert_eq!(image.largest_buffer_bytes, 160 * 256 * 256 * 4);
    let per_image = image.kv_cache_bytes + image.activations_bytes;
    let weights = 1_700 << 20;
    let wasm32 = 4 << 30;
    let cpu = image.largest_batch(weights, false, wasm32, 16);
    assert_eq!(cpu as u64, (wasm32 - weights) / per_image);
    assert!(
        (4..9).contains(&cpu),
        "d16 on wasm32's 4 GiB holds a batch of 4, not of 9: {cpu}"
    );
    // On a GPU the weights do not count (no total is known), the largest buffer does.
    let binding = 5 * image.largest_buffer_bytes + 1;
    assert_eq!(image.largest_batch(weights, true, binding, 16), 5);
    assert_eq!(
        image.largest_batch(weights, true, 1 << 40, 16),
        16,
        "capped"
    );
    // A model that loaded runs one image, whatever the arithmetic says.
    assert_eq!(image.largest_batch(weights, true, 1, 16), 1);
    assert_eq!(image.largest_batch(wasm32 + 1, false, wasm32, 16), 1);
    // The shipped model's batches all fit either way.
    let shipped = var_web::config::ModelConfig::from_json(
        &std::fs::read_to_string("www/models/fashion-mnist/config.json").unwrap(),
        CONFIG_FILE,
    )
    .unwrap();
    let small = ImageMemory::of(&shipped);
    assert_eq!(small.largest_batch(30 << 20, false, wasm32, 16), 16);
    assert_eq!(small.largest_batch(30 << 20, true, 128 << 20, 16), 16);
}

/// The page's conversion (tensor by tensor, the checkpoints read by ranges) writes exactly the
/// bytes `var convert` writes, so its fingerprint is the CLI's; and packing shards as tensors
/// arrive gives the shards that packing them all at once gives.
#[test]
fn a_conversion_read_by_ranges_writes_what_var_convert_writes() {
    use var_web::convert::{Conversion, ConvertOptions, convert_pth};
    use var_web::weights::pth::PthFile;

    let dir = common::scratch("stream");
    let out = dir.join("int8");
    let options = ConvertOptions {
        storage: Storage::Int8,
        shard_bytes: Some(SMALL_SHARD),
    };
    let (vae, var) = (
        common::fixture("vae_tiny.pth"),
        common::fixture("var_mini.pth"),
    );
    let cli = convert_pth(&vae, &var, &[1, 2, 3, 4], &out, &options, |_| {}).unwrap();

    let by_ranges = |path: &Path| PthFile::from_ranges(std::fs::read(path).unwrap(), 4096).unwrap();
    let mut conversion = Conversion::new(
        (by_ranges(&vae), "vae_tiny.pth"),
        (by_ranges(&var), "var_mini.pth"),
        &[1, 2, 3, 4],
        "int8",
        Storage::Int8,
        Some(SMALL_SHARD),
    )
    .unwrap();
    let mut shards = Vec::new();
    let mut steps = 0;
    while !conversion.is_done() {
        shards.extend(conversion.step().unwrap());
        steps += 1;
    }
    assert_eq!(conversion.tensors(), (steps, steps));
    let (read, total) = conversion.bytes();
    assert_eq!(read, total);
    let page = conversion.finish().unwrap();

    assert_eq!(page.fingerprint(), cli.fingerprint());
    let on_disk = |f: &str| std::fs::read(out.join(f)).unwrap();
    assert_eq!(page.manifest_json.as_bytes(), on_disk(MANIFEST_FILE));
    assert_eq!(page.config_json.as_bytes(), on_disk(CONFIG_FILE));
    assert!(shards.len() > 4, "{} shards", shards.len());
    assert_eq!(shards.len(), page.manifest.shards.len());
    for (shard, entry) in shards.iter().zip(&page.manifest.shards) {
        assert_eq!(shard.file, entry.file);
        assert_eq!(shard.bytes, on_disk(&shard.file), "{}", shard.file);
    }

    // The all-at-once writer, given the same tensors at f32, packs the same shard boundaries.
    let batch = dir.join("batch");
    let f32_out = dir.join("f32");
    let f32_options = ConvertOptions {
        storage: Storage::F32,
        shard_bytes: Some(SMALL_SHARD),
    };
    let streamed = convert_pth(&vae, &var, &[1, 2, 3, 4], &f32_out, &f32_options, |_| {}).unwrap();
    let tensors = |dir: &Path, part: Part| {
        let m = manifest(dir);
        m.shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.part == part)
            .flat_map(|(i, s)| {
                let bytes = std::fs::read(dir.join(&s.file)).unwrap();
                let source = m.open_shard(i, &bytes).unwrap();
                source
                    .names()
                    .into_iter()
                    .map(|k| {
                        let (shape, values) = source.read_any(&k).unwrap();
                        (k, shape, values)
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    // Shards hold tensors in safetensors' order; the writer's input order is the file's.
    let in_file_order = |path: &Path, mut t: Vec<(String, Vec<usize>, Vec<f32>)>| {
        let f = PthFile::open(path).unwrap();
        let order: Vec<&str> = f.keys().collect();
        t.sort_by_key(|(k, _, _)| order.iter().position(|o| o == k));
        t
    };
    let write_options = modeldir::WriteOptions {
        int8_group: 0,
        shard_bytes: Some(SMALL_SHARD),
    };
    modeldir::write(
        &batch,
        &streamed.config,
        &in_file_order(&vae, tensors(&f32_out, Part::Vqvae)),
        &in_file_order(&var, tensors(&f32_out, Part::Var)),
        &write_options,
    )
    .unwrap();
    assert_eq!(manifest(&batch), streamed.manifest);
}

/// Two files in the wrong roles are refused before any tensor is read, naming the files.
#[test]
fn a_conversion_of_swapped_or_foreign_files_names_them() {
    use var_web::convert::Conversion;
    use var_web::weights::pth::PthFile;

    let open = |name: &str| PthFile::open(&common::fixture(name)).unwrap();
    let start = |vae: &str, var: &str| {
        Conversion::new(
            (open(vae), vae),
            (open(var), var),
            &[1, 2, 3, 4],
            "m",
            Storage::Int8,
            None,
        )
        .err()
        .expect("refused")
        .to_string()
    };
    let swapped = start("var_mini.pth", "vae_tiny.pth");
    assert!(
        swapped.contains("var_mini.pth is a VAR transformer and vae_tiny.pth a VQ-VAE"),
        "{swapped}"
    );
    let two_vaes = start("vae_tiny.pth", "vae_tiny.pth");
    assert!(
        two_vaes.contains("vae_tiny.pth is not a VAR transformer checkpoint"),
        "{two_vaes}"
    );
}
