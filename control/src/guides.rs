//! Guides for client owners are Markdown written by engineers. They are
//! rendered to HTML here, safely: raw HTML in the Markdown is shown as text,
//! and links and images may only point to http(s), mailto or relative URLs.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

fn safe_url(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    match u.find(':') {
        // A scheme comes before any `/`, `?` or `#`.
        Some(i) if !u[..i].contains(['/', '?', '#']) => {
            matches!(&u[..i], "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// Renders Markdown (CommonMark with tables, strikethrough and task lists) to safe HTML.
pub fn render_markdown(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        // Raw HTML becomes text, so it is escaped on output.
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Event::Start(Tag::Link {
            link_type,
            dest_url: CowStr::from("#"),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Event::Start(Tag::Image {
            link_type,
            dest_url: CowStr::from("#"),
            title,
            id,
        }),
        e => e,
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_code_samples_and_headings() {
        let html = render_markdown("# Switch reads\n\n```rust\nlet r = ramp.route(key);\n```\n");
        assert!(html.contains("<h1>Switch reads</h1>"));
        assert!(html.contains("<pre><code class=\"language-rust\">let r = ramp.route(key);"));
    }

    #[test]
    fn raw_html_and_script_urls_are_neutralised() {
        let html = render_markdown(
            "<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)> [x](javascript:alert(1)) [ok](/guide)",
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("javascript:"));
        assert!(html.contains("href=\"/guide\""));
    }
}
