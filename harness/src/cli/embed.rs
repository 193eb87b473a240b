//! `dmlbench embed`: run a model over a dataset split and save its embeddings.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use dmlbench_datasets::transform::{RecipeSizes, recipe};
use dmlbench_datasets::{Format, LoadOptions, Split, index, npy};
use dmlbench_models::{Backbone, ModelConfig, load_checkpoint};
use dmlbench_record::write_atomic;

use crate::experiment::device::parse_device;
use crate::train::embed::embed_split;
use crate::train::optimizer::number_parameters;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench embed --checkpoint results/default/checkpoints/cross_entropy-seed0/model.safetensors \\
                 --format cub --root data/synthetic-cub --image-size 48 --resize 56 --out emb/
  dmlbench embed --backbone resnet50 --weights weights/resnet50-0676ba61.pth \\
                 --format cub --root data/CUB_200_2011 --split test --out emb-imagenet/
  dmlbench eval --embeddings emb/embeddings.npy --labels emb/labels.npy

Writes OUT/embeddings.npy (float32, n × d) and OUT/labels.npy (int64), in the split's order,
with the evaluation transform (resize, centre crop, ImageNet normalisation). A checkpoint's
architecture is read from the model.ron beside it.")]
pub struct EmbedArgs {
    /// A model checkpoint written by `dmlbench run` (model.safetensors with model.ron beside it)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["backbone", "weights"], required_unless_present = "backbone")]
    checkpoint: Option<PathBuf>,
    /// A bare backbone instead (its pooled features are the embeddings)
    #[arg(long, value_enum)]
    backbone: Option<BackboneArg>,
    /// Pretrained weights for --backbone (torchvision .pth or safetensors)
    #[arg(long, value_name = "FILE", requires = "backbone")]
    weights: Option<PathBuf>,
    /// Dataset format
    #[arg(long, value_parser = parse_format)]
    format: Format,
    /// Dataset root
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Which split [default: test, or query for In-Shop]
    #[arg(long, value_parser = parse_split)]
    split: Option<Split>,
    /// Network input size (centre crop side)
    #[arg(long, default_value_t = 224)]
    image_size: u32,
    /// Resize before the crop [default: image size × 256/224]
    #[arg(long)]
    resize: Option<u32>,
    /// Images per forward pass
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Decoding threads
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Device: cpu, cuda:N, tch, tch-cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Accept datasets whose counts differ from the published ones
    #[arg(long)]
    no_strict: bool,
    /// Output directory
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackboneArg {
    Resnet18,
    Resnet34,
    Resnet50,
    SmallCnn,
}

fn parse_format(text: &str) -> Result<Format, String> {
    text.parse::<Format>()
}

fn parse_split(text: &str) -> Result<Split, String> {
    match text {
        "train" => Ok(Split::Train),
        "test" => Ok(Split::Test),
        "query" => Ok(Split::Query),
        "gallery" => Ok(Split::Gallery),
        other => Err(format!("unknown split '{other}'; use train, test, query or gallery")),
    }
}

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let backend = parse_device(&args.device)?;
    let device = backend.device().context("opening the device")?;
    let (config, checkpoint) = match (&args.checkpoint, args.backbone) {
        (Some(file), _) => {
            let config_file = file.with_file_name("model.ron");
            let text = std::fs::read_to_string(&config_file).with_context(|| {
                format!("reading {} (the architecture of {})", config_file.display(), file.display())
            })?;
            let config: ModelConfig = ron::from_str(&text)
                .with_context(|| format!("{} is not a model configuration", config_file.display()))?;
            (ModelConfig { weights: None, ..config }, Some(file.clone()))
        }
        (None, Some(backbone)) => {
            let backbone = match backbone {
                BackboneArg::Resnet18 => Backbone::ResNet18,
                BackboneArg::Resnet34 => Backbone::ResNet34,
                BackboneArg::Resnet50 => Backbone::ResNet50,
                BackboneArg::SmallCnn => Backbone::default(),
            };
            let config = ModelConfig {
                backbone,
                weights: args.weights.clone(),
                frozen_bn: true,
                embedding_dim: None,
                normalize: false,
                bn_head: false,
                dropout: 0.0,
            };
            (config, None)
        }
        (None, None) => bail!("give --checkpoint or --backbone"),
    };
    let (mut model, report) = config.init(&device, 0).context("building the model")?;
    if let Some(report) = report {
        eprintln!("{report}");
    }
    if let Some(file) = &checkpoint {
        model = number_parameters(load_checkpoint(model, file)?);
    }

    let options = LoadOptions { strict: !args.no_strict };
    let dataset = index::load(args.format, &args.root, &options)
        .with_context(|| format!("loading the {} dataset at {}", args.format.name(), args.root.display()))?;
    let which = args.split.unwrap_or(if args.format == Format::Inshop { Split::Query } else { Split::Test });
    let split = dataset
        .into_split(which)
        .with_context(|| format!("the {} format has no {} split", args.format.name(), which.name()))?;
    let resize = args.resize.unwrap_or(args.image_size * 256 / 224);
    anyhow::ensure!(
        resize >= args.image_size,
        "--resize ({resize}) must be at least --image-size ({})",
        args.image_size
    );
    let transform = recipe(args.format, RecipeSizes { resize, crop: args.image_size }, false).eval;

    let split = Arc::new(split);
    let progress = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("embedding {bar:30} {pos}/{len} batches").expect("valid template"),
    );
    let embeddings = embed_split(&model, &device, &split, &transform, args.batch_size, args.workers, |done, total| {
        progress.set_length(total as u64);
        progress.set_position(done as u64);
    })?;
    progress.finish_and_clear();
    let d = model.embedding_size();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    // Through temporary files: an interrupted run leaves no partial file under these names.
    for (name, bytes) in [
        ("embeddings.npy", npy::embeddings_bytes(split.len(), d, &embeddings)),
        ("labels.npy", npy::labels_bytes(&split.labels())),
    ] {
        let path = args.out.join(name);
        write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{} embeddings of size {d} from the {} split written to {}",
        split.len(),
        which.name(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
