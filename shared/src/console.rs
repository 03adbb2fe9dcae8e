//! Links into the AWS Management Console that open what a report talks about: the Run Command
//! output of one instance, and an S3 object of the output bucket.
//!
//! A Run Command `StandardOutputUrl` (`https://s3.amazonaws.com/<bucket>/<key>` or the
//! regional `https://s3.<region>.amazonaws.com/<bucket>/<key>`) is an S3 REST URL: a browser
//! gets `AccessDenied` from it for a private bucket, because it carries no signature. The
//! console pages below open the same output for a signed-in operator.
//!
//! The console is per partition (`aws`: `console.aws.amazon.com`, `aws-cn`:
//! `console.amazonaws.cn`, `aws-us-gov`: `console.amazonaws-us-gov.com`) and each page takes the
//! Region as the `region` query parameter; the commercial console is also reached through a
//! Region-specific host name (`<region>.console.aws.amazon.com`), which avoids a redirect.

/// The console host for a Region, by partition.
fn console_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("{region}.console.amazonaws.cn")
    } else if region.starts_with("us-gov-") {
        "console.amazonaws-us-gov.com".to_string()
    } else {
        format!("{region}.console.aws.amazon.com")
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters and `/` kept, which the S3
/// console's `prefix` parameter shows as typed).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The Run Command page that shows one instance's output of a command.
pub fn command_output(region: &str, command_id: &str, instance_id: &str) -> String {
    format!(
        "https://{}/systems-manager/run-command/{}/{}?region={}",
        console_host(region),
        encode(command_id),
        encode(instance_id),
        encode(region)
    )
}

/// The S3 console page of one object.
pub fn s3_object(region: &str, bucket: &str, key: &str) -> String {
    format!(
        "https://{}/s3/object/{}?region={}&bucketType=general&prefix={}",
        console_host(region),
        encode(bucket),
        encode(region),
        encode(key)
    )
}

/// The S3 console page of a folder (prefix) of a bucket.
pub fn s3_folder(region: &str, bucket: &str, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    format!(
        "https://{}/s3/buckets/{}?region={}&bucketType=general&prefix={}",
        console_host(region),
        encode(bucket),
        encode(region),
        encode(&prefix)
    )
}

/// `(bucket, key)` of an S3 REST URL as Run Command reports it (path style, global or
/// regional endpoint, or virtual-hosted style), or of an `s3://bucket/key` URI.
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/')?;
        return (!bucket.is_empty()).then(|| (bucket.to_string(), key.to_string()));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/')?;
    let path = path.split(['?', '#']).next().unwrap_or("");
    let is_s3_host = |h: &str| {
        h == "s3.amazonaws.com"
            || h.starts_with("s3.")
                && (h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn"))
            || h.starts_with("s3-") && h.ends_with(".amazonaws.com")
    };
    if is_s3_host(host) {
        let (bucket, key) = path.split_once('/')?;
        return (!bucket.is_empty() && !key.is_empty())
            .then(|| (bucket.to_string(), key.to_string()));
    }
    // Virtual-hosted style: <bucket>.s3[.<region>].amazonaws.com/<key>
    let (bucket, endpoint) = host.split_once(".s3")?;
    let endpoint = format!("s3{endpoint}");
    (is_s3_host(&endpoint) && !bucket.is_empty() && !path.is_empty())
        .then(|| (bucket.to_string(), path.to_string()))
}

/// A browser-openable link for an S3 output URL: its S3 console object page, or the URL
/// unchanged when it is not an S3 URL (so nothing is lost).
pub fn s3_link(region: &str, url: &str) -> String {
    match parse_s3_url(url) {
        Some((bucket, key)) => s3_object(region, &bucket, &key),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_command_output_page_of_one_instance() {
        assert_eq!(
            command_output("eu-central-1", "0b1c2d3e-aaaa-bbbb-cccc-1234567890ab", "i-0123456789abcdef0"),
            "https://eu-central-1.console.aws.amazon.com/systems-manager/run-command/0b1c2d3e-aaaa-bbbb-cccc-1234567890ab/i-0123456789abcdef0?region=eu-central-1"
        );
    }

    #[test]
    fn the_console_host_follows_the_partition() {
        assert!(command_output("cn-north-1", "c", "i-1")
            .starts_with("https://cn-north-1.console.amazonaws.cn/"));
        assert!(command_output("us-gov-west-1", "c", "i-1")
            .starts_with("https://console.amazonaws-us-gov.com/systems-manager/run-command/c/i-1?region=us-gov-west-1"));
    }

    #[test]
    fn run_command_s3_urls_become_console_object_pages() {
        let key = "patchpilot/run-command/test/cmd-1/i-0abc/awsrunShellScript/PatchLinux/stdout";
        for url in [
            format!("https://s3.amazonaws.com/my-bucket/{key}"),
            format!("https://s3.eu-west-1.amazonaws.com/my-bucket/{key}"),
            format!("https://my-bucket.s3.eu-west-1.amazonaws.com/{key}"),
            format!("https://s3-eu-west-1.amazonaws.com/my-bucket/{key}"),
            format!("s3://my-bucket/{key}"),
        ] {
            assert_eq!(
                parse_s3_url(&url),
                Some(("my-bucket".to_string(), key.to_string())),
                "{url}"
            );
            assert_eq!(
                s3_link("eu-west-1", &url),
                format!("https://eu-west-1.console.aws.amazon.com/s3/object/my-bucket?region=eu-west-1&bucketType=general&prefix={key}")
            );
        }
    }

    #[test]
    fn keys_are_encoded_and_other_urls_are_kept() {
        assert_eq!(
            s3_object("us-east-1", "b", "a b/c+d"),
            "https://us-east-1.console.aws.amazon.com/s3/object/b?region=us-east-1&bucketType=general&prefix=a%20b/c%2Bd"
        );
        assert_eq!(
            s3_link("us-east-1", "https://example.com/x"),
            "https://example.com/x"
        );
        assert_eq!(parse_s3_url("https://s3.amazonaws.com/bucket-only"), None);
    }

    #[test]
    fn folder_pages_end_with_a_slash() {
        assert_eq!(
            s3_folder("us-east-1", "b", "/patchpilot/run-command/"),
            "https://us-east-1.console.aws.amazon.com/s3/buckets/b?region=us-east-1&bucketType=general&prefix=patchpilot/run-command/"
        );
    }
}
