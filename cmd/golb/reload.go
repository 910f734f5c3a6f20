package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golb/golb/core"
)

// reloadAnswer is POST /v1/reload's body (core's reloadAnswer).
type reloadAnswer struct {
	core.ReloadEvent
	Error   string          `json:"error"`
	Refused []string        `json:"refused"`
	Diags   *core.DiagsJSON `json:"diagnostics"`
}

// reloadTimeout bounds `golb reload`'s wait: a reload validates the file
// with the driver plugins and binds listeners before it answers.
const reloadTimeout = 3 * time.Minute

// cmdReload is `golb reload`: the running agent re-reads its config file and
// applies the difference live. An invalid file prints the diagnostics `golb
// validate` prints, and a change that cannot apply live its reason; either
// way nothing changed and the exit code is 1.
func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reload", stderr, "Usage: golb reload [--admin ADDR]\n\nThe running agent re-reads the file it was started with and applies the\ndifference live (SIGHUP does the same). An invalid file, or a change that\ncannot apply live (data_dir, stats, admin address, ...), changes nothing:\nits diagnostics or reason are printed and the exit code is 1.")
	admin := fs.String("admin", defaultAdmin(), "admin API address")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+*admin+"/v1/reload", strings.NewReader("{}"))
	if err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	req.Header.Set("Content-Type", "application/json") // the admin API's guard against cross-site posts
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "golb: cannot reach the golb agent at %s (is `golb run` running? use --admin or GOLB_ADMIN): %v\n", *admin, err)
		return exitError
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var ans reloadAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		fmt.Fprintf(stderr, "golb: POST /v1/reload: %s: %s\n", resp.Status, bytes.TrimSpace(raw))
		return exitError
	}
	if ans.Diags != nil {
		diags, files := ans.Diags.HCL()
		printDiags(stderr, files, diags)
	}
	if resp.StatusCode != http.StatusOK {
		switch {
		case len(ans.Refused) > 0:
			for _, r := range ans.Refused {
				fmt.Fprintln(stderr, "golb: refused:", r)
			}
			fmt.Fprintln(stderr, "golb: reload refused: nothing changed")
		case ans.Diags != nil:
			fmt.Fprintln(stderr, "golb: reload refused: fix the config first; nothing changed")
		default:
			fmt.Fprintln(stderr, "golb:", ans.Error)
		}
		return exitError
	}
	fmt.Fprintf(stdout, "reload %s: %s\n", ans.Result, ans.Summary)
	return exitOK
}

// reloadOnHUP reloads the agent's config at each SIGHUP until ctx ends,
// logging the outcome (an invalid file's diagnostics at ERROR, by core).
func reloadOnHUP(ctx context.Context, agent *core.Agent, hup <-chan os.Signal, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		logger.Info("SIGHUP: reloading the config")
		rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
		_, err := agent.Reload(rctx)
		cancel()
		if err != nil {
			logger.Error("SIGHUP: reload changed nothing", "err", err)
		}
	}
}

// reloadLine is the last reload's line in `golb status`, "" when none.
func reloadLine(admin string) string {
	var st core.ReloadStatus
	if err := call(admin, "GET", "/v1/reload", nil, &st); err != nil || st.Last == nil {
		return ""
	}
	return fmt.Sprintf("last reload: %s at %s: %s", st.Last.Result, st.Last.Time.Format(time.RFC3339), st.Last.Summary)
}
