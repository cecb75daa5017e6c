package console

import (
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryPhraseInBothLanguages: a phrase missing in one language would
// show its key to a person at 03:00.
func TestEveryPhraseInBothLanguages(t *testing.T) {
	for _, pair := range [][2]string{{LangEnglish, LangJapanese}, {LangJapanese, LangEnglish}} {
		for key := range phrases[pair[0]] {
			if _, ok := phrases[pair[1]][key]; !ok {
				t.Errorf("%q is in %s but not in %s", key, pair[0], pair[1])
			}
		}
	}
	// Both say the same things: as many formatting verbs in each.
	verb := regexp.MustCompile(`%[dsvq]`)
	for key, en := range phrases[LangEnglish] {
		if ja := phrases[LangJapanese][key]; len(verb.FindAllString(en, -1)) != len(verb.FindAllString(ja, -1)) {
			t.Errorf("%q: %q and %q take different arguments", key, en, ja)
		}
	}
}

// TestTemplatesUseKnownPhrases: every phrase key a template names exists.
func TestTemplatesUseKnownPhrases(t *testing.T) {
	entries, err := templateFS.ReadDir("templates")
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`\.T "([a-z_.]+)"`)
	for _, e := range entries {
		b, err := templateFS.ReadFile("templates/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range key.FindAllStringSubmatch(string(b), -1) {
			if _, ok := phrases[LangEnglish][m[1]]; !ok {
				t.Errorf("%s names the unknown phrase %q", e.Name(), m[1])
			}
		}
	}
}

func TestChooseLanguage(t *testing.T) {
	for header, want := range map[string]string{
		"":                      LangJapanese,
		"ja":                    LangJapanese,
		"ja-JP,en-US;q=0.8":     LangJapanese,
		"en-GB,ja;q=0.5":        LangEnglish,
		"de-DE,fr;q=0.9":        LangEnglish,
		"de-DE,ja;q=0.2":        LangJapanese,
		"not a ; language list": LangJapanese,
	} {
		r := httptest.NewRequest("GET", "/ui/inbox", nil)
		r.Header.Set("Accept-Language", header)
		if got := chooseLanguage(r); got != want {
			t.Errorf("Accept-Language %q: %s, want %s", header, got, want)
		}
	}
	r := httptest.NewRequest("GET", "/ui/inbox", nil)
	r.Header.Set("Accept-Language", "ja")
	r.Header.Set("Cookie", LangCookie+"=en")
	if got := chooseLanguage(r); got != LangEnglish {
		t.Errorf("the switch's cookie says en, the browser ja: %s", got)
	}
}

func TestLocalNextStaysInTheConsole(t *testing.T) {
	for _, bad := range []string{"", "/v1/runs", "//evil.example/ui/", "https://evil.example/ui/", "/ui/\\evil", "/ui/x\r\nSet-Cookie: a=b", "ui/inbox"} {
		if got := localNext(bad); got != "" {
			t.Errorf("localNext(%q) = %q", bad, got)
		}
	}
	for _, good := range []string{"/ui/inbox", "/ui/runs/run-1", "/ui/release?gateway=gw-osaka"} {
		if got := localNext(good); got != good {
			t.Errorf("localNext(%q) = %q", good, got)
		}
	}
	if !slices.Contains(pageNames, "error") || strings.Contains(CSP, "unsafe") {
		t.Error("the console needs its error page and a policy without unsafe sources")
	}
}
