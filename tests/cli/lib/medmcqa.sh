# tests/cli/lib/medmcqa.sh - MedMCQA-shaped records for the CLI tests that source it.
# medmcqa BASE ANSWERS...: one JSON line per answer index (0-3), cop counted from
# BASE (0: the Hugging Face dataset, 1: the original release), with the
# release's other fields (id, exp sometimes null, choice_type, subject_name,
# topic_name) as its files have them.
medmcqa() {
  local base=$1 i=0
  shift
  for a in "$@"; do
    i=$((i + 1))
    local exp='null'
    [ $((i % 2)) -eq 0 ] && exp="\"Explanation $i.\""
    printf '{"question": "Which organ makes hormone number %d?", "exp": %s, "cop": %d, "opa": "Liver %d", "opb": "Pancreas %d", "opc": "Kidney %d", "opd": "Spleen %d", "subject_name": "Physiology", "topic_name": null, "id": "q-%04d", "choice_type": "single"}\n' \
      "$i" "$exp" $((a + base)) "$i" "$i" "$i" "$i" "$i"
  done
}
