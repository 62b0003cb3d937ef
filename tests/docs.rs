//! The docs keep up with the code: every relative link and `#anchor` of the README and the book
//! (docs/src) resolves, the link checker that says so catches what it must, the Tests page
//! names every test file, and the conf the README shows is one `headway -t` accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check_links(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(repo().join("scripts/check_links.py"))
        .args(args)
        .output()
        .expect("python3 runs scripts/check_links.py")
}

#[test]
fn every_link_of_the_readme_and_the_book_resolves() {
    let out = check_links(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(", 0 broken"), "{stderr}");
}

#[test]
fn the_link_checker_names_a_missing_file_and_a_missing_anchor_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.md");
    std::fs::write(
        dir.path().join("other.md"),
        "# Other page\n\n## A `rate_limit` section, again\n\n```sh\n# not a heading\n```\n",
    )
    .unwrap();
    std::fs::write(
        &page,
        "# Page\n\n\
         [fine](other.md), [fine anchor](other.md#a-rate_limit-section-again), \
         [own heading](#page), [web](https://example.com/nowhere.md)\n\
         [gone](missing.md) and [bad anchor](other.md#not-a-heading)\n\
         `[in code](nowhere.md)`\n\n```md\n[in a block](nowhere.md)\n```\n",
    )
    .unwrap();
    let out = check_links(&[page.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "broken links passed:\n{stderr}");
    assert!(
        stderr.contains("page.md:4: missing.md: no such file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("page.md:4: other.md#not-a-heading: no heading with the id"),
        "{stderr}"
    );
    assert!(stderr.contains(", 2 broken"), "{stderr}");
    assert!(
        !stderr.contains("nowhere.md"),
        "a link in code was checked:\n{stderr}"
    );

    // The built book: hrefs and srcs to files of the book, fragments to ids in them.
    let book = dir.path().join("book");
    std::fs::create_dir(&book).unwrap();
    std::fs::write(book.join("b.html"), "<h1 id=\"there\">B</h1>").unwrap();
    std::fs::write(
        book.join("a.html"),
        "<a href=\"b.html#there\">ok</a> <a href=\"#\">top</a> <a href=\"https://x.test/\">web</a>\n\
         <a href=\"b.html#gone\">bad</a> <img src=\"images/none.png\">\n",
    )
    .unwrap();
    // other.md has no broken link: only the HTML is judged.
    let clean = dir.path().join("other.md");
    let out = check_links(&[clean.to_str().unwrap(), "--html", book.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "broken HTML links passed:\n{stderr}");
    assert!(
        stderr.contains("a.html:2: <a> b.html#gone: no element with the id `gone`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a.html:2: <img> images/none.png: no such file"),
        "{stderr}"
    );
    assert!(stderr.contains(", 2 broken"), "{stderr}");
}

#[test]
fn the_tests_page_names_every_test_file_and_only_those() {
    let page = std::fs::read_to_string(repo().join("docs/src/tests.md")).unwrap();
    let mut files = Vec::new();
    for dir in ["tests", "demo/tests"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".rs") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    assert!(files.len() > 20, "test files not found: {files:?}");
    for file in &files {
        assert!(
            page.contains(&format!("| `{file}` |")),
            "docs/src/tests.md has no row for {file}: one line on what it proves"
        );
    }
    for row in page.lines().filter(|l| l.starts_with("| `")) {
        let named = row.trim_start_matches("| `").split('`').next().unwrap();
        if named.ends_with(".rs") {
            assert!(
                repo().join(named).is_file(),
                "docs/src/tests.md names {named}: no such file"
            );
        }
    }
}

#[test]
fn the_conf_the_readme_shows_passes_dash_t() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let conf = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md shows no yaml conf");
    assert!(conf.contains("gateway:"), "not a whole conf:\n{conf}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headway.yaml");
    std::fs::write(&path, conf).unwrap();
    let (code, stdout, stderr) = support::run_headway(&["-t", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "README.md's conf fails -t:\n{stdout}{stderr}");
}
