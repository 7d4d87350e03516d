//! Markdown from people (roadmap items' descriptions) into HTML that is
//! safe to put in a page: CommonMark with tables and strikethrough, raw HTML
//! shown as text, and links only to `http`, `https`, `mailto` or this site
//! (a `javascript:` link becomes plain text). Images become their alt text:
//! the pages load nothing from elsewhere. A leaf.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html};

/// `text` as safe HTML.
pub fn to_html(text: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    // Which links were dropped, so that their end tags go too.
    let mut dropped: Vec<bool> = Vec::new();
    let events = Parser::new_ext(text, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            let safe = safe_url(&dest_url);
            dropped.push(!safe);
            safe.then_some(Event::Start(Tag::Link { link_type, dest_url, title, id }))
        }
        Event::End(TagEnd::Link) => (!dropped.pop().unwrap_or(false)).then_some(Event::End(TagEnd::Link)),
        // An image's alt text is the events inside it; the image itself goes.
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        other => Some(other),
    });
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

/// Whether a link may be followed: a web or mail address, or a path here.
fn safe_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    let scheme = lower.split_once(':').map(|(s, _)| s).filter(|s| !s.contains(['/', '?', '#']));
    match scheme {
        Some(s) => matches!(s, "http" | "https" | "mailto"),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_rendered_and_raw_html_is_shown_as_text() {
        assert_eq!(to_html("**Hourly** data"), "<p><strong>Hourly</strong> data</p>\n");
        let html = to_html("<script>alert(1)</script>\n\nhi <b onclick=x>there</b>");
        assert!(!html.contains("<script") && !html.contains("<b "), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn only_web_mail_and_local_links_stay_links() {
        assert!(to_html("[docs](https://example.org/a)").contains(r#"<a href="https://example.org/a">docs</a>"#));
        assert!(to_html("[here](/priorities)").contains(r#"<a href="/priorities">"#));
        for bad in
            ["[x](javascript:alert(1))", "[x](JavaScript:alert(1))", "[x]( data:text/html,hi)", "[x](vbscript:y)"]
        {
            let html = to_html(bad);
            assert!(!html.contains("<a"), "{bad}: {html}");
            assert!(html.contains('x'), "the text stays: {html}");
        }
        let img = to_html("![a chart](https://example.org/c.png)");
        assert!(!img.contains("<img") && img.contains("a chart"), "{img}");
    }
}
