//go:build race

package wsgate

// raceEnabled: the race detector drops sync.Pool entries at random, so
// allocation counts of pooled paths only hold without it.
const raceEnabled = true
