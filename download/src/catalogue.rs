//! Where the datasets and pretrained weights come from, and how each is checked.
//!
//! A checksum appears here only where a public source states it; none is made up. Where
//! none is published, or the file has no stable public URL, the entry says why, and the
//! command asks for `--from` and `--sha256` (or an explicit `--no-verify`).

use crate::unpack::Layout;
use crate::verify::Expected;

/// One of the four benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct DatasetSource {
    /// The name on the command line and the dataset format's name (`cub`).
    pub name: &'static str,
    /// The dataset's usual name.
    pub title: &'static str,
    /// The archive's file name.
    pub archive: &'static str,
    /// Where it is published, when it is (`None`: no stable public URL).
    pub url: Option<&'static str>,
    /// Its SHA-256, when a public source states it.
    pub sha256: Option<&'static str>,
    /// Why there is no URL or no SHA-256 (empty when there are both).
    pub note: &'static str,
    /// Whether the archive holds the dataset's directory (`true`, unpacked as is) or its
    /// content (`false`, unpacked into `dir`).
    pub archive_holds_dir: bool,
    /// The directory the loaders read, under the download directory; the paper recipes'
    /// `root` (`data/CUB_200_2011`).
    pub dir: &'static str,
    /// An annotation file published beside the archive rather than in it; copied in when it
    /// lies next to a local `--from` archive.
    pub companion: Option<&'static str>,
    /// How to get the files by hand and the layout they must have.
    pub manual: &'static str,
}

impl DatasetSource {
    /// Where the archive's content goes.
    pub fn layout(&self) -> Layout {
        if self.archive_holds_dir { Layout::Top(self.dir.to_string()) } else { Layout::Into(self.dir.to_string()) }
    }

    /// The catalogue's check of the archive, if it has one.
    pub fn expected(&self) -> Option<Expected> {
        self.sha256.map(|hex| Expected::Sha256(hex.to_string()))
    }
}

/// The datasets, in the order the README lists them.
pub const DATASETS: [DatasetSource; 4] = [
    DatasetSource {
        name: "cub",
        title: "CUB-200-2011",
        archive: "CUB_200_2011.tgz",
        // The authors' page (https://www.vision.caltech.edu/datasets/cub_200_2011/) links
        // this CaltechDATA record; pytorch-metric-learning's `datasets/cub.py` downloads it.
        url: Some("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"),
        // tensorflow/datasets `url_checksums/caltech_birds2011.txt` (1,150,585,339 bytes) and
        // torchvision's `prototype/datasets/_builtin/cub200.py` both state this hash of the
        // archive whose MD5 the authors give as 97eceeb196236b17998738112f37df78.
        sha256: Some("0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081"),
        note: "",
        archive_holds_dir: true,
        dir: "CUB_200_2011",
        companion: None,
        manual: "\
Download CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ and run
  dmlbench data download cub --from CUB_200_2011.tgz
It unpacks to CUB_200_2011/ holding images.txt, image_class_labels.txt, classes.txt,
bounding_boxes.txt and images/<class>/<image>.jpg.",
    },
    DatasetSource {
        name: "cars196",
        title: "Cars196",
        archive: "car_ims.tgz",
        url: None,
        sha256: None,
        note: "the original files (http://imagenet.stanford.edu/internal/car196/car_ims.tgz and \
               cars_annos.mat, also once at ai.stanford.edu/~jkrause) are offline, mirrors differ, \
               and only MD5s of the originals were published (car_ims.tgz \
               d5c8f0aa497503f355e17dc7886c3f14, cars_annos.mat b407c6086d669747186bd1d764ff9dbc)",
        archive_holds_dir: false,
        dir: "cars196",
        companion: Some("cars_annos.mat"),
        manual: "\
Cars196 (Stanford Cars) has no stable public download any more: the original
http://imagenet.stanford.edu/internal/car196/car_ims.tgz and cars_annos.mat are offline and no
SHA-256 of them was ever published (MD5 only: car_ims.tgz d5c8f0aa497503f355e17dc7886c3f14,
cars_annos.mat b407c6086d669747186bd1d764ff9dbc; check a copy with `md5sum`).
Get both files (a copy you trust, a mirror), put them in one directory, and run
  dmlbench data download cars196 --from /path/to/car_ims.tgz --sha256 \"$(sha256sum /path/to/car_ims.tgz | cut -d' ' -f1)\"
This unpacks car_ims/ into data/cars196/ and copies cars_annos.mat from beside the archive:
  data/cars196/cars_annos.mat        MATLAB level 5 or v7.3 (HDF5), struct array 'annotations'
                                     with relative_im_path, bbox_x1..bbox_y2, class, test
  data/cars196/car_ims/000001.jpg … 016185.jpg
A cars_annos.mat re-saved as MATLAB v7.3 (`save -v7.3`) reads as the published level-5 file does.",
    },
    DatasetSource {
        name: "sop",
        title: "Stanford Online Products",
        archive: "Stanford_Online_Products.zip",
        // The authors' repository (github.com/rksltnl/Deep-Metric-Learning-CVPR16) names
        // ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip and this Google Drive
        // copy; pytorch-metric-learning's `datasets/sop.py` downloads the Drive one (FTP is
        // not HTTP, so the Drive copy is the one used here).
        url: Some(
            "https://drive.usercontent.google.com/download?id=1TclrpQOF_ullUP99wk_gjGN8pKvtErG8&export=download&authuser=0&confirm=t",
        ),
        // tensorflow/datasets `url_checksums/stanford_online_products.txt`: the hash of the
        // authors' archive (3,083,860,082 bytes).
        sha256: Some("b04fa78210e69fab050ce73939550e1cd0f96890bdd98ec9fee732c3b756ef48"),
        note: "",
        archive_holds_dir: true,
        dir: "Stanford_Online_Products",
        companion: None,
        manual: "\
Download Stanford_Online_Products.zip from https://cvgl.stanford.edu/projects/lifted_struct/
and run
  dmlbench data download sop --from Stanford_Online_Products.zip
It unpacks to Stanford_Online_Products/ holding Ebay_train.txt, Ebay_test.txt and
<super_class>_final/<image>.JPG.",
    },
    DatasetSource {
        name: "inshop",
        title: "In-Shop Clothes Retrieval (DeepFashion)",
        archive: "img.zip",
        url: None,
        sha256: None,
        note: "DeepFashion is distributed through a Google Drive folder after agreeing to its terms \
               (http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html); no stable \
               URL and no checksum are published",
        archive_holds_dir: false,
        dir: "InShop",
        companion: Some("list_eval_partition.txt"),
        manual: "\
In-Shop has no stable public URL: DeepFashion is shared through a Google Drive folder after
agreeing to its terms at http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html,
and no checksum is published. From the In-shop Clothes Retrieval Benchmark folder download
Img/img.zip and Eval/list_eval_partition.txt, put them in one directory, and run
  dmlbench data download inshop --from /path/to/img.zip --sha256 \"$(sha256sum /path/to/img.zip | cut -d' ' -f1)\"
This unpacks img/ into data/InShop/ and copies list_eval_partition.txt from beside the archive:
  data/InShop/list_eval_partition.txt   count line, header 'image_name item_id evaluation_status',
                                        one line per image
  data/InShop/img/WOMEN/Dresses/id_00000002/02_1_front.jpg …
(img.zip, the low-resolution images, is what the literature uses; not img_highres.zip.)",
    },
];

/// The dataset of a name, if there is one.
pub fn dataset(name: &str) -> Option<&'static DatasetSource> {
    DATASETS.iter().find(|d| d.name == name)
}

/// torchvision's ImageNet weights of one backbone.
#[derive(Debug, Clone, Copy)]
pub struct WeightsSource {
    /// The backbone's name on the command line (`resnet50`).
    pub name: &'static str,
    /// torchvision's file name, which the recipes' `weights` paths use.
    pub file: &'static str,
    /// Where torchvision downloads it from.
    pub url: &'static str,
}

impl WeightsSource {
    /// The start of the file's SHA-256, from its name (`resnet50-0676ba61.pth` → `0676ba61`),
    /// as `torch.hub` checks it.
    pub fn expected(&self) -> Expected {
        let stem = self.file.strip_suffix(".pth").unwrap_or(self.file);
        let prefix = stem.rsplit_once('-').map(|(_, hash)| hash).unwrap_or("");
        Expected::Sha256Prefix(prefix.to_string())
    }
}

/// The `IMAGENET1K_V1` weights of torchvision's `models/resnet.py` (`ResNet18_Weights`,
/// `ResNet34_Weights`, `ResNet50_Weights`): the ones Boudiaf et al. and the DML literature
/// start from.
pub const WEIGHTS: [WeightsSource; 3] = [
    WeightsSource {
        name: "resnet18",
        file: "resnet18-f37072fd.pth",
        url: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    },
    WeightsSource {
        name: "resnet34",
        file: "resnet34-b627a593.pth",
        url: "https://download.pytorch.org/models/resnet34-b627a593.pth",
    },
    WeightsSource {
        name: "resnet50",
        file: "resnet50-0676ba61.pth",
        url: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    },
];

/// The weights of a backbone name, if there are some.
pub fn weights(name: &str) -> Option<&'static WeightsSource> {
    WEIGHTS.iter().find(|w| w.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_prefixes_come_from_the_file_names() {
        assert_eq!(weights("resnet50").unwrap().expected(), Expected::Sha256Prefix("0676ba61".into()));
        for w in WEIGHTS {
            assert!(w.url.ends_with(w.file), "{}", w.name);
            let Expected::Sha256Prefix(prefix) = w.expected() else { panic!() };
            assert_eq!(prefix.len(), 8, "{}", w.name);
        }
    }

    #[test]
    fn every_dataset_has_a_checksum_or_says_why_not() {
        for d in DATASETS {
            if let Some(hex) = d.sha256 {
                assert!(Expected::sha256(hex).is_ok(), "{}", d.name);
            }
            assert_eq!(d.url.is_some() && d.sha256.is_some(), d.note.is_empty(), "{}", d.name);
            assert!(d.manual.contains(d.archive), "{}", d.name);
        }
    }
}
