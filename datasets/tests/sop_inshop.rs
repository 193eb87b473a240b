//! Stanford Online Products and In-Shop loading: hand-written fixtures, the published
//! counts, and bad input.

mod common;

use std::path::Path;

use common::{assert_error, spread, write};
use dmlbench_datasets::{ClassInfo, Format, LoadOptions, Split, index};

fn lenient() -> LoadOptions {
    LoadOptions { strict: false }
}

const SOP_TRAIN: &str = "image_id class_id super_class_id path
1 1 1 bicycle_final/111085122871_0.JPG
2 1 1 bicycle_final/111085122871_1.JPG
3 2 3 chair_final/222_0.JPG
";
const SOP_TEST: &str = "image_id class_id super_class_id path
1 3 1 bicycle_final/333_0.JPG
2 4 7 lamp_final/444_0.JPG
3 4 7 lamp_final/444_1.JPG
";

fn sop_fixture(root: &Path) {
    write(root, "Ebay_train.txt", SOP_TRAIN);
    write(root, "Ebay_test.txt", SOP_TEST);
}

#[test]
fn sop_reads_both_files() {
    let dir = tempfile::tempdir().unwrap();
    sop_fixture(dir.path());
    let data = index::load(Format::Sop, dir.path(), &lenient()).unwrap();
    let train = data.split(Split::Train).unwrap();
    let test = data.split(Split::Test).unwrap();
    assert_eq!(train.labels(), vec![0, 0, 1]);
    assert_eq!(
        train.classes,
        vec![ClassInfo { id: 1, name: "bicycle_final/1".into() }, ClassInfo { id: 2, name: "chair_final/2".into() },]
    );
    assert_eq!(test.labels(), vec![0, 1, 1]);
    assert_eq!(test.classes[1].id, 4);
    assert_eq!(test.items[2].path, Path::new("lamp_final/444_1.JPG"));
    assert_eq!(test.items[2].line, Some(4));
}

#[test]
fn sop_bad_input_names_file_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "Ebay_train.txt",
            "id class super path\n",
            "Ebay_train.txt:1: expected the header 'image_id class_id super_class_id path'",
        ),
        ("Ebay_train.txt", "image_id class_id super_class_id path\n1 1 1\n", "Ebay_train.txt:2: expected 4 fields"),
        (
            "Ebay_test.txt",
            "image_id class_id super_class_id path\n1 2 1 chair_final/x.JPG\n",
            "Ebay_test.txt:2: class 2 is also in",
        ),
        (
            "Ebay_train.txt",
            "image_id class_id super_class_id path\n1 1 1 a/b.JPG\n1 1 1 a/c.JPG\n",
            "Ebay_train.txt:3: duplicate image id 1 (first on line 2)",
        ),
        (
            "Ebay_train.txt",
            "image_id class_id super_class_id path\n1 one 1 a/b.JPG\n",
            "Ebay_train.txt:2: class id 'one' is not an integer",
        ),
        (
            "Ebay_train.txt",
            "image_id class_id super_class_id path\n1 0 1 a/b.JPG\n",
            "Ebay_train.txt:2: class id 0 must be at least 1",
        ),
        (
            "Ebay_test.txt",
            "image_id class_id super_class_id path\n1 9 1 ../../x.JPG\n",
            "Ebay_test.txt:2: path '../../x.JPG' contains '..'",
        ),
        ("Ebay_test.txt", "", "Ebay_test.txt: file is empty"),
    ];
    for (file, text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        sop_fixture(dir.path());
        write(dir.path(), file, text);
        assert_error(index::load(Format::Sop, dir.path(), &lenient()), &[want]);
    }
}

#[test]
fn sop_published_counts() {
    let dir = tempfile::tempdir().unwrap();
    for (name, n, classes, first) in [("Ebay_train.txt", 59_551, 11_318, 1), ("Ebay_test.txt", 60_502, 11_316, 11_319)]
    {
        let mut text = String::from("image_id class_id super_class_id path\n");
        for (i, c) in spread(n, classes, first).into_iter().enumerate() {
            text += &format!("{} {c} {} s{}_final/{c}_{i}.JPG\n", i + 1, c % 12 + 1, c % 12);
        }
        write(dir.path(), name, &text);
    }
    let data = index::load(Format::Sop, dir.path(), &LoadOptions::default()).unwrap();
    let counts: Vec<(usize, usize)> = data.splits.iter().map(|s| (s.len(), s.num_classes())).collect();
    assert_eq!(counts, vec![(59_551, 11_318), (60_502, 11_316)]);
}

const INSHOP: &str = "7
image_name item_id evaluation_status
img/WOMEN/Dresses/id_00000002/02_1_front.jpg                  id_00000002  train
img/WOMEN/Dresses/id_00000002/02_2_side.jpg                   id_00000002  train
img/MEN/Pants/id_00000007/01_1_front.jpg                      id_00000007  train
img/WOMEN/Skirts/id_00000010/01_1_front.jpg                   id_00000010  query
img/WOMEN/Skirts/id_00000010/01_2_side.jpg                    id_00000010  gallery
img/MEN/Tees/id_00000011/01_1_front.jpg                       id_00000011  gallery
img/MEN/Tees/id_00000011/01_2_side.jpg                        id_00000011  query
";

#[test]
fn inshop_splits_share_the_evaluation_label_space() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "list_eval_partition.txt", INSHOP);
    let data = index::load(Format::Inshop, dir.path(), &lenient()).unwrap();
    let splits: Vec<Split> = data.splits.iter().map(|s| s.split).collect();
    assert_eq!(splits, vec![Split::Train, Split::Query, Split::Gallery]);
    let (train, query, gallery) = (&data.splits[0], &data.splits[1], &data.splits[2]);
    assert_eq!(train.labels(), vec![0, 0, 1]);
    assert_eq!(train.classes.iter().map(|c| c.id).collect::<Vec<_>>(), vec![2, 7]);
    // Query: id 10 then id 11; gallery: id 10 then id 11; same labels for the same item.
    assert_eq!(query.labels(), vec![0, 1]);
    assert_eq!(gallery.labels(), vec![0, 1]);
    assert_eq!(query.classes, gallery.classes);
    assert_eq!(query.classes[1], ClassInfo { id: 11, name: "id_00000011".into() });
    assert_eq!(gallery.items[1].path, Path::new("img/MEN/Tees/id_00000011/01_1_front.jpg"));
}

#[test]
fn inshop_bad_input_names_the_line() {
    let replace = |from: &str, to: &str| INSHOP.replacen(from, to, 1);
    let cases: Vec<(String, &str)> = vec![
        (replace("7\n", "8\n"), "list_eval_partition.txt:1: the first line says 8 images but 7 are listed"),
        (replace("7\n", "seven\n"), "list_eval_partition.txt:1: image count 'seven' is not an integer"),
        (replace("image_name item_id", "name item"), "list_eval_partition.txt:2: expected the header"),
        (
            replace("id_00000007  train", "id_00000007  val"),
            "list_eval_partition.txt:5: status 'val' is not train, query or gallery",
        ),
        (
            replace("id_00000007  train", "item7  train"),
            "list_eval_partition.txt:5: item id 'item7' is not of the form id_<digits>",
        ),
        (
            replace("id_00000011  gallery", "id_00000002  gallery"),
            "list_eval_partition.txt:8: item id_00000002 is used for both training and evaluation (see line 3)",
        ),
        (replace("02_2_side.jpg", "02_1_front.jpg"), "list_eval_partition.txt:4: duplicate image"),
        (replace("id_00000007  train", "id_00000007"), "list_eval_partition.txt:5: expected 3 fields"),
        (
            replace("img/MEN/Pants", "/etc/Pants"),
            "list_eval_partition.txt:5: path '/etc/Pants/id_00000007/01_1_front.jpg' is absolute",
        ),
    ];
    for (text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "list_eval_partition.txt", &text);
        assert_error(index::load(Format::Inshop, dir.path(), &lenient()), &[want]);
    }
}

#[test]
fn inshop_published_counts() {
    let mut rows = Vec::new();
    for (i, item) in spread(25_882, 3_997, 1).into_iter().enumerate() {
        rows.push(format!("img/X/id_{item:08}/{i}.jpg id_{item:08} train"));
    }
    // Evaluation items 4001–7985: every item gets query and gallery images.
    for (i, item) in spread(14_218, 3_985, 4_001).into_iter().enumerate() {
        rows.push(format!("img/Y/id_{item:08}/q{i}.jpg id_{item:08} query"));
    }
    for (i, item) in spread(12_612, 3_985, 4_001).into_iter().enumerate() {
        rows.push(format!("img/Y/id_{item:08}/g{i}.jpg id_{item:08} gallery"));
    }
    let text = format!("{}\nimage_name item_id evaluation_status\n{}\n", rows.len(), rows.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "list_eval_partition.txt", &text);
    let data = index::load(Format::Inshop, dir.path(), &LoadOptions::default()).unwrap();
    let counts: Vec<(usize, usize)> = data.splits.iter().map(|s| (s.len(), s.num_classes())).collect();
    assert_eq!(counts, vec![(25_882, 3_997), (14_218, 3_985), (12_612, 3_985)]);

    // One gallery image fewer: strict load fails, lenient load warns.
    let short =
        text.replace("img/Y/id_00007985/g12611.jpg id_00007985 gallery\n", "").replacen("52712\n", "52711\n", 1);
    write(dir.path(), "list_eval_partition.txt", &short);
    assert_error(
        index::load(Format::Inshop, dir.path(), &LoadOptions::default()),
        &["gallery split has 12611 images, expected 12612"],
    );
    assert_eq!(index::load(Format::Inshop, dir.path(), &lenient()).unwrap().warnings.len(), 1);
}
