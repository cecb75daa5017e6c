package report

// Render writes m in lang ("ja" or "en") and format ("md" or "html"). An
// unknown language or format is an *UnsupportedError naming the value.
func Render(m Model, lang, format string) ([]byte, error) {
	switch format {
	case FormatMarkdown:
		return Markdown(m, lang)
	case FormatHTML:
		return HTML(m, lang)
	}
	return nil, &UnsupportedError{What: "format", Value: format}
}

// ContentType is the media type of a rendered format ("" for an unknown
// one).
func ContentType(format string) string {
	switch format {
	case FormatMarkdown:
		return "text/markdown; charset=utf-8"
	case FormatHTML:
		return "text/html; charset=utf-8"
	}
	return ""
}
