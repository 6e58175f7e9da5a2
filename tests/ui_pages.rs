//! The web pages over plain HTTP (what the browser test does not need a
//! browser for): tag paging newest first across pages, and the storage page
//! with current figures and the content marked damaged.

mod common;

use common::{bytes, Client, Server};

/// The `href` of the page's "More tags" link, if any.
fn next_link(html: &str) -> Option<String> {
    let i = html.find("rel=\"next\" href=\"")? + "rel=\"next\" href=\"".len();
    Some(html[i..i + html[i..].find('"')?].replace("&amp;", "&"))
}

/// Tag names of a repository page's tag table, in order.
fn tags_listed(html: &str) -> Vec<String> {
    let table = &html[html.find("<table id=\"tags\">").expect("a tag table")..];
    let table = &table[..table.find("</table>").unwrap()];
    table
        .split("<tr>")
        .skip(2) // before the head, the head
        .filter_map(|row| {
            let a = row.find("\">")? + 2;
            Some(row[a..a + row[a..].find("</a>")?].to_string())
        })
        .collect()
}

#[test]
fn tags_page_newest_first_across_pages() {
    let s = Server::start();
    let c = Client::new(&s);
    let (_, manifest) = c.push_image("r", "t0000", b"layer");
    // 501 tags, one page holds 500; pushed in name order, so the newest
    // (t0500) leads and the oldest (t0000) is alone on page two
    // (a later millisecond: tags moved in the same one are listed by name)
    std::thread::sleep(std::time::Duration::from_millis(2));
    for i in 1..=500 {
        if i == 500 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let r = c.put_manifest("r", &format!("t{i:04}"), common::OCI_MANIFEST, &manifest);
        assert_eq!(r.status, 201);
    }
    let page = c.get("/ui/repo/r");
    assert_eq!(page.status, 200);
    let html = page.text();
    let first = tags_listed(&html);
    assert_eq!(first.len(), 500);
    assert_eq!(first[0], "t0500");
    assert!(!first.contains(&"t0000".to_string()));
    let next = next_link(&html).expect("a link to the next page");
    let html = c.get(&next).text();
    assert_eq!(tags_listed(&html), vec!["t0000"]);
    assert_eq!(next_link(&html), None);
}

#[test]
fn storage_page_is_current_and_names_damaged_content() {
    let s = Server::start();
    let c = Client::new(&s);
    let html = c.get("/ui/admin").text();
    assert!(html.contains("<dt>Repositories</dt><dd>0</dd>"), "{html}");
    assert!(html.contains("Nothing is marked damaged."));
    let d = c.push_blob("a", &bytes(7, 200_000));
    c.push_image("b", "v1", b"layer");
    // a small store is counted for each view: the pushes show at once
    let html = c.get("/ui/admin").text();
    assert!(html.contains("<dt>Repositories</dt><dd>2</dd>"), "{html}");

    let hex = &d[7..];
    let path = s.data.join("blobs/sha256").join(&hex[..2]).join(hex);
    let mut raw = std::fs::read(&path).unwrap();
    raw[99] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    assert_eq!(c.req("POST", "/_berth/scrub", &[], b"").status, 200);
    let html = c.get("/ui/admin").text();
    let table = &html[html.find("id=\"damaged\"").expect("a damage table")..];
    assert!(table.contains(&format!("<code>{d}</code>")), "{table}");
}
