package sdp

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readDrop parses the golden format plans, one directive a line:
//
//	# comment
//	media <i> drop <fmt> [<fmt>...]
func readDrop(t testing.TB, text string, nmedia int) *FormatPlan {
	p := &FormatPlan{Drop: make([][]string, nmedia)}
	for n, ln := range strings.Split(text, "\n") {
		f := strings.Fields(ln)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		i, err := strconv.Atoi(f[1])
		if len(f) < 4 || f[0] != "media" || f[2] != "drop" || err != nil || i < 0 || i >= nmedia {
			t.Fatalf("drop line %d %q: want media <i> drop <fmt>...", n+1, ln)
		}
		p.Drop[i] = append(p.Drop[i], f[3:]...)
	}
	return p
}

// TestFormatsGolden filters every testdata/formats/NAME.sdp by NAME.drop
// and compares with NAME.golden (run with -update, review the diff).
func TestFormatsGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/formats/*.sdp")
	if len(files) == 0 {
		t.Fatal("no inputs")
	}
	for _, in := range files {
		name := strings.TrimSuffix(in, ".sdp")
		t.Run(filepath.Base(name), func(t *testing.T) {
			body, _ := os.ReadFile(in)
			var s Session
			if err := s.Parse(body); err != nil {
				t.Fatal(err)
			}
			drop, err := os.ReadFile(name + ".drop")
			if err != nil {
				t.Fatal(err)
			}
			p := readDrop(t, string(drop), s.NumMedia())
			out, err := s.AppendFilter(nil, p)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(name+".golden", out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, _ := os.ReadFile(name + ".golden")
			if !bytes.Equal(out, want) {
				t.Errorf("differs from %s.golden:\n got: %q\nwant: %q", name, out, want)
			}
			var r Session
			if err := r.Parse(out); err != nil {
				t.Fatalf("output does not parse: %v", err)
			}
			// Every dropped format is gone from the m= line and from the
			// attributes that name it; every other format stays.
			for i := 0; i < s.NumMedia(); i++ {
				for _, f := range s.Formats(nil, i) {
					gone := s.Media(i).Port != 0 && contains(p.Drop[i], f.PT)
					still := false
					for _, g := range r.Formats(nil, i) {
						still = still || bytes.Equal(g.PT, f.PT)
					}
					if still == gone {
						t.Errorf("media %d format %s: dropped %v, still there %v", i, f.PT, gone, still)
					}
				}
			}
		})
	}
}

func TestFormats(t *testing.T) {
	var s Session
	body, _ := os.ReadFile("testdata/formats/audio-video.sdp")
	if err := s.Parse(body); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range s.Formats(nil, 0) {
		got = append(got, string(f.PT)+"="+string(f.Encoding))
	}
	if strings.Join(got, " ") != "96=opus 0=PCMU 8=PCMA 101=telephone-event" {
		t.Errorf("formats %v", got)
	}
}

func TestAppendFilterRefuses(t *testing.T) {
	var s Session
	body, _ := os.ReadFile("testdata/formats/g729-dropped.sdp")
	if err := s.Parse(body); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*FormatPlan{
		{Drop: [][]string{{"18", "0", "8", "101"}}}, // nothing left
		{Drop: [][]string{{"99"}}},                  // not offered
		{Drop: [][]string{{"0"}, {"0"}}},            // more entries than media
	} {
		if _, err := s.AppendFilter(nil, p); !errors.Is(err, ErrPlan) {
			t.Errorf("%v: err %v, want ErrPlan", p.Drop, err)
		}
	}
	if out, err := s.AppendFilter(nil, &FormatPlan{}); err != nil || !bytes.Equal(out, body) {
		t.Errorf("empty plan changed the body: %v", err)
	}
}
