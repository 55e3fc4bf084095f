//! AWS-shaped XML for the Query protocol: `<{Action}Response>` with a `<{Action}Result>` and
//! `<ResponseMetadata><RequestId>`, and `<ErrorResponse><Error><Type><Code><Message>` for
//! errors, in the IAM or STS namespace. Text is escaped by quick-xml.

use quick_xml::escape::escape;

pub const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// A small XML element tree: what the responses need, nothing more.
pub enum Node {
    Text(&'static str, String),
    Element(&'static str, Vec<Node>),
}

impl Node {
    pub fn text(name: &'static str, value: impl Into<String>) -> Node {
        Node::Text(name, value.into())
    }

    fn write(&self, out: &mut String) {
        match self {
            Node::Text(name, value) => {
                out.push_str(&format!("<{name}>{}</{name}>", escape(value.as_str())));
            }
            Node::Element(name, children) => {
                out.push_str(&format!("<{name}>"));
                for child in children {
                    child.write(out);
                }
                out.push_str(&format!("</{name}>"));
            }
        }
    }
}

/// `<{action}Response xmlns=..>[<{action}Result>..</..>]<ResponseMetadata>..` ; `result`
/// `None` for actions that return nothing.
pub fn response(
    namespace: &str,
    action: &str,
    result: Option<Vec<Node>>,
    request_id: &str,
) -> String {
    let mut out =
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><{action}Response xmlns="{namespace}">"#);
    if let Some(children) = result {
        out.push_str(&format!("<{action}Result>"));
        for child in &children {
            child.write(&mut out);
        }
        out.push_str(&format!("</{action}Result>"));
    }
    out.push_str(&format!(
        "<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        escape(request_id)
    ));
    out
}

/// AWS's error document.
pub fn error(
    namespace: &str,
    sender_fault: bool,
    code: &str,
    message: &str,
    request_id: &str,
) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><ErrorResponse xmlns="{namespace}"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>"#,
        if sender_fault { "Sender" } else { "Receiver" },
        escape(code),
        escape(message),
        escape(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_and_errors_have_aws_shape_and_escaped_text() {
        let r = response(
            IAM_NS,
            "CreateUser",
            Some(vec![Node::Element(
                "User",
                vec![Node::text("UserName", "a<b&c")],
            )]),
            "rid",
        );
        assert!(
            r.contains(r#"<CreateUserResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">"#)
        );
        assert!(r.contains(
            "<CreateUserResult><User><UserName>a&lt;b&amp;c</UserName></User></CreateUserResult>"
        ));
        assert!(r.ends_with(
            "<ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></CreateUserResponse>"
        ));
        let e = error(STS_NS, true, "SignatureDoesNotMatch", "x\n'y'", "rid");
        assert!(e.contains("<Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>x\n&apos;y&apos;</Message></Error>"), "{e}");
    }
}
