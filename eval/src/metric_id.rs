//! The names of the metrics in [`Metrics`]: one identifier per number an evaluation reports,
//! used by experiment files (model selection), records and leaderboard columns alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Metrics;

/// One metric of [`Metrics`]. Written (experiment files, records, JSON) as its machine name,
/// the field name it is read from: `recall_at_1`, `precision_at_1`, `r_precision`,
/// `map_at_r`, `nmi`, `ami`.
///
/// The order is the leaderboard's column order: Recall@K by K, then MAP@R, R-precision, NMI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricId {
    /// Recall@K.
    RecallAt(usize),
    /// MAP@R.
    MapAtR,
    /// R-precision.
    RPrecision,
    /// Normalised mutual information.
    Nmi,
    /// Precision@1 (equal to Recall@1).
    PrecisionAt1,
    /// Adjusted mutual information.
    Ami,
}

/// A metric name that is none of [`MetricId`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric '{0}'; known: recall_at_K (K ≥ 1), precision_at_1, r_precision, map_at_r, nmi, ami")]
pub struct UnknownMetric(pub String);

impl MetricId {
    /// Every metric an evaluation with these K values reports, Recall@K first.
    pub fn all(ks: &[usize]) -> Vec<MetricId> {
        let mut ids: Vec<MetricId> = ks.iter().map(|&k| MetricId::RecallAt(k)).collect();
        ids.extend([MetricId::PrecisionAt1, MetricId::RPrecision, MetricId::MapAtR, MetricId::Nmi, MetricId::Ami]);
        ids
    }

    /// Short column heading.
    pub fn label(&self) -> String {
        match self {
            MetricId::RecallAt(k) => format!("R@{k}"),
            MetricId::MapAtR => "MAP@R".into(),
            MetricId::RPrecision => "R-prec".into(),
            MetricId::Nmi => "NMI".into(),
            MetricId::PrecisionAt1 => "P@1".into(),
            MetricId::Ami => "AMI".into(),
        }
    }

    /// Machine name, as the fields of [`Metrics`] (`recall_at_1`, `map_at_r`, …).
    pub fn key(&self) -> String {
        match self {
            MetricId::RecallAt(k) => format!("recall_at_{k}"),
            MetricId::MapAtR => "map_at_r".into(),
            MetricId::RPrecision => "r_precision".into(),
            MetricId::Nmi => "nmi".into(),
            MetricId::PrecisionAt1 => "precision_at_1".into(),
            MetricId::Ami => "ami".into(),
        }
    }

    /// Whether it comes from the k-means clustering (NMI, AMI), which an evaluation may skip.
    pub fn needs_clustering(&self) -> bool {
        matches!(self, MetricId::Nmi | MetricId::Ami)
    }

    /// The value in `metrics`, if it was measured and is finite.
    pub fn get(&self, metrics: &Metrics) -> Option<f64> {
        let value = match self {
            MetricId::RecallAt(k) => metrics.recall_at_k.get(k).copied(),
            MetricId::MapAtR => Some(metrics.map_at_r),
            MetricId::RPrecision => Some(metrics.r_precision),
            MetricId::Nmi => metrics.nmi,
            MetricId::PrecisionAt1 => Some(metrics.precision_at_1),
            MetricId::Ami => metrics.ami,
        };
        value.filter(|v| v.is_finite())
    }
}

impl fmt::Display for MetricId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl FromStr for MetricId {
    type Err = UnknownMetric;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "precision_at_1" => MetricId::PrecisionAt1,
            "r_precision" => MetricId::RPrecision,
            "map_at_r" => MetricId::MapAtR,
            "nmi" => MetricId::Nmi,
            "ami" => MetricId::Ami,
            _ => match s.strip_prefix("recall_at_").and_then(|k| k.parse::<usize>().ok()) {
                // `recall_at_01` would name the same metric twice: only the plain decimal form.
                Some(k) if k >= 1 && k.to_string() == s["recall_at_".len()..] => MetricId::RecallAt(k),
                _ => return Err(UnknownMetric(s.to_string())),
            },
        })
    }
}

impl Serialize for MetricId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.key())
    }
}

impl<'de> Deserialize<'de> for MetricId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics {
            recall_at_k: [(1, 0.5), (4, 0.75)].into_iter().collect(),
            precision_at_1: 0.5,
            r_precision: 0.3,
            map_at_r: 0.2,
            nmi: Some(0.6),
            ami: None,
            queries: 10,
            skipped_queries: 0,
        }
    }

    #[test]
    fn every_name_parses_back_to_its_metric() {
        for id in MetricId::all(&[1, 2, 4, 8, 1000]) {
            assert_eq!(id.key().parse::<MetricId>(), Ok(id), "{id}");
        }
    }

    #[test]
    fn names_that_are_not_metrics_are_refused_with_the_list() {
        for bad in ["", "recall", "recall_at_", "recall_at_0", "recall_at_01", "recall_at_-1", "MAP@R", "nmi "] {
            let err = bad.parse::<MetricId>().unwrap_err();
            assert_eq!(err, UnknownMetric(bad.to_string()));
            assert!(err.to_string().contains("map_at_r"), "{err}");
        }
    }

    #[test]
    fn values_are_read_from_the_field_of_the_same_name() {
        let m = metrics();
        assert_eq!(MetricId::RecallAt(4).get(&m), Some(0.75));
        assert_eq!(MetricId::RecallAt(2).get(&m), None, "not measured");
        assert_eq!(MetricId::PrecisionAt1.get(&m), Some(0.5));
        assert_eq!(MetricId::RPrecision.get(&m), Some(0.3));
        assert_eq!(MetricId::MapAtR.get(&m), Some(0.2));
        assert_eq!(MetricId::Nmi.get(&m), Some(0.6));
        assert_eq!(MetricId::Ami.get(&m), None, "clustering skipped");
        let mut nan = m.clone();
        nan.map_at_r = f64::NAN;
        assert_eq!(MetricId::MapAtR.get(&nan), None, "not finite");
    }

    #[test]
    fn serialised_as_the_machine_name() {
        assert_eq!(serde_json::to_string(&MetricId::RecallAt(2)).unwrap(), "\"recall_at_2\"");
        assert_eq!(ron::from_str::<MetricId>("\"map_at_r\"").unwrap(), MetricId::MapAtR);
        assert!(ron::from_str::<MetricId>("\"recall_at_0\"").is_err());
    }

    #[test]
    fn columns_sort_recall_by_k_first() {
        let mut ids = vec![MetricId::Nmi, MetricId::RecallAt(8), MetricId::MapAtR, MetricId::RecallAt(1)];
        ids.sort();
        assert_eq!(ids, [MetricId::RecallAt(1), MetricId::RecallAt(8), MetricId::MapAtR, MetricId::Nmi]);
    }
}
