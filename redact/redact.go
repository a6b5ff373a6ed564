// Package redact keeps secrets that ride inside URLs (a broker password
// in tcp://user:password@host, a key in a query string) out of errors
// and logs. Every URL that a config or a flag gives, and that an error or
// a log line shows, goes through URL; every such URL is parsed with
// ParseURL, whose errors, unlike url.Parse's, do not quote the URL.
package redact

import (
	"errors"
	"net/url"
)

// URL returns raw fit to show: the user name is kept, a password is
// replaced by xxxxx, and the query and fragment are dropped. A URL that
// does not parse is shown as "(unparsable URL)".
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	return u.Redacted()
}

// ParseURL is url.Parse with an error that says what is wrong but does
// not repeat the URL, which may hold a password.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	var ue *url.Error
	if errors.As(err, &ue) {
		return nil, ue.Err
	}
	return u, err
}
