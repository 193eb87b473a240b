//! `dmlbench data download` and `dmlbench weights download`: the catalogue's datasets and
//! weights, or a mirror or local copy of them, verified and put where the recipes read them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, bail};
use dmlbench_datasets::Format;
use dmlbench_download::catalogue::{self, DatasetSource};
use dmlbench_download::{Expected, FetchOptions, Origin, Progress, install_dataset, install_weights};
use dmlbench_host::resolve_root;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::HostArgs;
use super::data::check_and_report;

pub(super) const DATA_ABOUT: &str = "\
Download a benchmark, verify its SHA-256, unpack it where the paper recipes read it, and check
it as `dmlbench data check` does.

CUB-200-2011 and Stanford Online Products download from their public locations and are
verified against the SHA-256 that tensorflow-datasets and torchvision publish. Cars196 and
In-Shop have no stable public URL: without --from the command prints how to get them and the
layout they need.

Downloads grow in DIR/<archive>.part and resume where they stopped (HTTP range requests), in
the same run after a broken connection and in a later run. A file whose SHA-256 is wrong is
renamed <archive>.bad and never used. The archive unpacks into a temporary directory beside
the destination, renamed into place only when complete; members with absolute paths, '..' or
links are refused. An existing dataset directory is never overwritten. A downloaded archive
is removed once unpacked; a local one (--from PATH) is left alone.

--from takes a mirror URL or an archive already on disk (clusters whose compute nodes have no
internet). It is verified against --sha256 when given, else against the catalogue's SHA-256
(the same archive from elsewhere has the same hash); a source with neither is refused unless
--no-verify is given. For Cars196 and In-Shop, the annotation file published beside the
archive (cars_annos.mat, list_eval_partition.txt) is copied in when it lies next to a local
archive.

Exit status: 0 when the dataset is in place and its check found no problem, 1 when the check
found problems, 2 when it could not be downloaded, verified or unpacked.";

pub(super) const DATA_EXAMPLES: &str = "\
Examples:
  # CUB-200-2011 into data/CUB_200_2011 (the paper recipe's root)
  dmlbench data download cub

  # Stanford Online Products into /scratch/data/Stanford_Online_Products
  dmlbench data download sop --to /scratch/data

  # An archive copied to a cluster without internet, checked against the catalogue's SHA-256
  dmlbench data download cub --from ~/CUB_200_2011.tgz

  # A mirror, with the SHA-256 of the copy you trust
  dmlbench data download cub --from https://mirror.example.org/CUB_200_2011.tgz --sha256 0c685df5…

  # Cars196 and In-Shop: how to get them, then the local archives
  dmlbench data download cars196
  dmlbench data download cars196 --from ~/cars/car_ims.tgz --sha256 HEX";

pub(super) const WEIGHTS_ABOUT: &str = "\
Download torchvision's ImageNet weights of a ResNet (IMAGENET1K_V1, the ones the paper recipes
start from) into DIR under torchvision's file name, which the recipes' `weights` paths use:
resnet18-f37072fd.pth, resnet34-b627a593.pth, resnet50-0676ba61.pth. The file's SHA-256 must
start with the 8 hexadecimal digits in its name, as torch.hub checks it; a file that does not is
renamed NAME.bad and never used. Downloads resume like `data download`'s.

--from takes a mirror URL or a file on disk, checked against --sha256 when given, else against
the prefix in the name; --no-verify skips the check.";

pub(super) const WEIGHTS_EXAMPLES: &str = "\
Examples:
  # weights/resnet50-0676ba61.pth, as experiments/paper-*.ron expect
  dmlbench weights download resnet50

  # A copy from a machine with internet, checked against the hash prefix in its name
  dmlbench weights download resnet50 --from ~/resnet50-0676ba61.pth --to /scratch/weights";

/// Where a file comes from and how it is checked: shared by both download commands.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// Directory to download into [default: data/ or weights/ under the project root].
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// A mirror URL (http:// or https://) or a file on disk to use instead of the catalogue's.
    #[arg(long, value_name = "URL_OR_PATH")]
    from: Option<String>,
    /// The SHA-256 the file must have (64 hexadecimal digits).
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Use the file without checking its SHA-256.
    #[arg(long, conflicts_with = "sha256")]
    no_verify: bool,
}

impl SourceArgs {
    /// `--to`, else `default` under the project root, else `default` here.
    fn directory(&self, host: &HostArgs, default: &str) -> PathBuf {
        match &self.to {
            Some(dir) => dir.clone(),
            None => resolve_root(host.root.as_deref()).map(|root| root.join(default)).unwrap_or_else(|| default.into()),
        }
    }
}

/// Arguments of `dmlbench data download`.
#[derive(Debug, clap::Args)]
pub struct DataDownloadArgs {
    /// The dataset.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(catalogue::DATASETS.map(|d| d.name)))]
    dataset: String,
    #[command(flatten)]
    source: SourceArgs,
    /// Count mismatches in the final check are warnings (for a subset of a dataset).
    #[arg(long)]
    no_strict: bool,
}

/// `dmlbench weights` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WeightsCommand {
    /// Download torchvision's ImageNet weights of a ResNet.
    #[command(long_about = WEIGHTS_ABOUT, after_help = WEIGHTS_EXAMPLES)]
    Download(WeightsDownloadArgs),
}

/// Arguments of `dmlbench weights download`.
#[derive(Debug, clap::Args)]
pub struct WeightsDownloadArgs {
    /// The backbone.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(catalogue::WEIGHTS.map(|w| w.name)))]
    backbone: String,
    #[command(flatten)]
    source: SourceArgs,
}

/// Runs `dmlbench data download`.
pub fn data_download(args: DataDownloadArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let source = catalogue::dataset(&args.dataset).expect("clap allows catalogue names only");
    let Some(origin) = args.source.from.as_deref().map(Origin::parse).or(source.url.map(|u| Origin::Url(u.into())))
    else {
        println!("{}", source.manual);
        bail!("{} has no public download dmlbench can verify; follow the steps above", source.title);
    };
    let to = args.source.directory(host, "data");
    let expected = Expected::choose(
        args.source.sha256.as_deref(),
        args.source.no_verify,
        source.expected(),
        &format!("{} from {origin}", source.archive),
        source.note,
    )?;
    let dir = install_dataset(source, &origin, &expected, &to, &Bar::new(), &FetchOptions::default())
        .with_context(|| format!("cannot install {} from {origin}", source.title))?;
    println!("{} is in {} ({})", source.title, dir.display(), verification(&expected));
    if let Some(companion) = missing_companion(source, &dir) {
        println!(
            "{companion} is missing: copy it into {} (see `dmlbench data download {}` without --from)",
            dir.display(),
            source.name
        );
    }
    let format: Format = source.name.parse().map_err(anyhow::Error::msg)?;
    check_and_report(format, &dir, !args.no_strict, false)
}

fn missing_companion(source: &DatasetSource, dir: &Path) -> Option<&'static str> {
    source.companion.filter(|name| !dir.join(name).is_file())
}

/// Runs a `dmlbench weights` subcommand.
pub fn weights(command: WeightsCommand, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let WeightsCommand::Download(args) = command;
    let source = catalogue::weights(&args.backbone).expect("clap allows catalogue names only");
    let origin = args.source.from.as_deref().map(Origin::parse).unwrap_or_else(|| Origin::Url(source.url.into()));
    let to = args.source.directory(host, "weights");
    let expected = Expected::choose(
        args.source.sha256.as_deref(),
        args.source.no_verify,
        Some(source.expected()),
        source.file,
        "",
    )?;
    let path = install_weights(source, &origin, &expected, &to, &Bar::new(), &FetchOptions::default())
        .with_context(|| format!("cannot install the {} weights from {origin}", source.name))?;
    println!("{} ({})", path.display(), verification(&expected));
    Ok(ExitCode::SUCCESS)
}

fn verification(expected: &Expected) -> String {
    match expected {
        Expected::Sha256(hex) => format!("SHA-256 {hex} verified"),
        Expected::Sha256Prefix(prefix) => format!("SHA-256 verified: starts with {prefix}"),
        Expected::Unverified => "not verified: --no-verify".into(),
    }
}

/// A progress bar on stderr per phase (download, verification, unpacking), drawn only when
/// stderr is a terminal.
struct Bar {
    current: Mutex<Option<ProgressBar>>,
    visible: bool,
}

impl Bar {
    fn new() -> Bar {
        Bar { current: Mutex::new(None), visible: std::io::stderr().is_terminal() }
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: Option<u64>, done: u64) {
        let target = if self.visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(total, target);
        let template = match total {
            Some(_) => "{msg}\n{bar:40} {bytes}/{total_bytes}, {bytes_per_sec}, eta {eta}",
            None => "{spinner} {msg}: {pos} files",
        };
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.set_message(what.to_string());
        bar.set_position(done);
        if let Some(old) = self.current.lock().unwrap().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.current.lock().unwrap().as_ref() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.current.lock().unwrap().take() {
            bar.finish_and_clear();
        }
    }
}
