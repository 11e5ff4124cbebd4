//! The runbook template language: `{{ inputs.NAME }}` and `{{ steps.ID.OUTPUT }}`, nothing more,
//! so that ids may contain dashes and every reference can be checked before a run starts.

use std::fmt;

use crate::echo;

/// One `{{ ... }}` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ref {
    Input(String),
    Output { step: String, output: String },
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Input(name) => write!(f, "inputs.{name}"),
            Ref::Output { step, output } => write!(f, "steps.{step}.{output}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Ref(Ref),
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close =
                after.find("}}").ok_or_else(|| format!("`{{{{` without a closing `}}}}` in `{}`", echo::clip(text)))?;
            parts.push(Part::Ref(parse_ref(after[..close].trim())?));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("`}}}}` without an opening `{{{{` in `{}`", echo::clip(text)));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.parts.iter().filter_map(|part| match part {
            Part::Ref(r) => Some(r),
            Part::Text(_) => None,
        })
    }

    pub fn is_literal(&self) -> bool {
        self.refs().next().is_none()
    }

    /// Substitute every reference; the first one `lookup` cannot answer is returned as the error.
    pub fn render(&self, mut lookup: impl FnMut(&Ref) -> Option<String>) -> Result<String, Ref> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Ref(r) => out.push_str(&lookup(r).ok_or_else(|| r.clone())?),
            }
        }
        Ok(out)
    }
}

fn parse_ref(expr: &str) -> Result<Ref, String> {
    let usage = || {
        format!(
            "`{{{{ {} }}}}` is not a known name: use {{{{ inputs.NAME }}}} or {{{{ steps.ID.OUTPUT }}}}",
            echo::clip(expr)
        )
    };
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let segments: Vec<&str> = expr.split('.').collect();
    if !segments.iter().all(|s| word(s)) {
        return Err(usage());
    }
    match segments.as_slice() {
        ["inputs", name] => Ok(Ref::Input(name.to_string())),
        ["steps", step, output] => Ok(Ref::Output { step: step.to_string(), output: output.to_string() }),
        _ => Err(usage()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_inputs_and_outputs_with_dashed_ids() {
        let t = Template::parse("deploy {{ inputs.ref }} after {{steps.deploy-fix.run_id}}!").unwrap();
        let out = t.render(|r| match r {
            Ref::Input(n) if n == "ref" => Some("main".into()),
            Ref::Output { step, output } if step == "deploy-fix" && output == "run_id" => Some("42".into()),
            _ => None,
        });
        assert_eq!(out.unwrap(), "deploy main after 42!");
    }

    #[test]
    fn an_unknown_name_is_returned_not_rendered_empty() {
        let t = Template::parse("{{ inputs.missing }}").unwrap();
        assert_eq!(t.render(|_| None), Err(Ref::Input("missing".into())));
    }

    #[test]
    fn rejects_anything_but_the_two_reference_shapes() {
        for bad in [
            "{{ flag }}",
            "{{ inputs }}",
            "{{ inputs.a.b }}",
            "{{ steps.x }}",
            "{{ inputs.a | upper }}",
            "{{ inputs.a",
            "x }}",
            "{{ }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(Template::parse("plain text").unwrap().is_literal());
    }

    proptest::proptest! {
        /// Any text parses or is refused without a panic; text without braces is literal and
        /// renders as itself.
        #[test]
        fn any_text_parses_or_is_refused_and_literal_text_renders_as_itself(text in "\\PC{0,40}") {
            let parsed = Template::parse(&text);
            if !text.contains('{') && !text.contains('}') {
                let template = parsed.unwrap();
                proptest::prop_assert!(template.is_literal());
                proptest::prop_assert_eq!(template.render(|_| None).unwrap(), text);
            }
        }

        /// Each reference renders as its value, and the text around it stays as written.
        #[test]
        fn references_render_as_their_values(
            before in "[^{}]{0,10}",
            name in "[a-z][a-z0-9_]{0,8}",
            value in "\\PC{0,10}",
            after in "[^{}]{0,10}",
        ) {
            let template = Template::parse(&format!("{before}{{{{ inputs.{name} }}}}{after}")).unwrap();
            let rendered = template.render(|r| matches!(r, Ref::Input(n) if *n == name).then(|| value.clone()));
            proptest::prop_assert_eq!(rendered.unwrap(), format!("{before}{value}{after}"));
        }
    }
}
