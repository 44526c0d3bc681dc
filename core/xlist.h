/* core/xlist.h - lists written once.
 *
 * A list of names that several files need (the recipe's choices, a lookup
 * table, an enum) is written once as a macro LIST(X, SEP) that applies X to
 * each entry and puts SEP between entries. From it:
 *   LIST(NAME, "|")        "a" "|" "b" "|" "c", i.e. the string "a|b|c"
 *   { LIST(ENTRY, DS_COMMA) }   an array initializer
 */
#ifndef DS_CORE_XLIST_H
#define DS_CORE_XLIST_H

#define DS_COMMA ,

#endif
