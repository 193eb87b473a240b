//! The dataset formats dmlbench reads and the splits each has.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A dataset's on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CUB-200-2011.
    Cub,
    /// Stanford Cars (Cars196).
    Cars196,
    /// Stanford Online Products.
    Sop,
    /// DeepFashion In-Shop Clothes Retrieval.
    Inshop,
    /// `root/<class>/<image>` folders.
    Folder,
    /// `.npy` embeddings and labels (no images).
    Features,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Format; 6] =
        [Format::Cub, Format::Cars196, Format::Sop, Format::Inshop, Format::Folder, Format::Features];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Format::Cub => "cub",
            Format::Cars196 => "cars196",
            Format::Sop => "sop",
            Format::Inshop => "inshop",
            Format::Folder => "folder",
            Format::Features => "features",
        }
    }

    /// The dataset's usual name.
    pub fn title(self) -> &'static str {
        match self {
            Format::Cub => "CUB-200-2011",
            Format::Cars196 => "Cars196",
            Format::Sop => "Stanford Online Products",
            Format::Inshop => "In-Shop",
            Format::Folder => "image folder",
            Format::Features => "feature files",
        }
    }

    /// The splits this format has, in order.
    pub fn splits(self) -> &'static [Split] {
        match self {
            Format::Inshop => &[Split::Train, Split::Query, Split::Gallery],
            _ => &[Split::Train, Split::Test],
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
            format!("unknown dataset format '{s}'; expected one of {}", names.join(", "))
        })
    }
}

/// A split of a dataset. DML splits are class-disjoint: no class of `Train` appears in the
/// evaluation splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training classes.
    Train,
    /// Evaluation classes, queried against themselves (CUB, Cars196, SOP, folders).
    Test,
    /// In-Shop evaluation queries.
    Query,
    /// In-Shop evaluation gallery.
    Gallery,
}

impl Split {
    /// The split's name, as in JSON and split files.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Query => "query",
            Split::Gallery => "gallery",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            "query" => Ok(Split::Query),
            "gallery" => Ok(Split::Gallery),
            _ => Err(format!("unknown split '{s}'; expected train, test, query or gallery")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_split_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        assert!("imagenet".parse::<Format>().unwrap_err().contains("cub, cars196"));
        assert_eq!("gallery".parse::<Split>().unwrap(), Split::Gallery);
        assert_eq!(Format::Inshop.splits(), &[Split::Train, Split::Query, Split::Gallery]);
    }
}
