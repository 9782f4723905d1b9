/* dlist.h -- an intrusive doubly-linked list: each element embeds a
 * dlist_node, a dlist holds the first and the last, and pushing at either
 * end or removing any node is O(1).
 *
 * Lists are NULL-terminated, not circular, so all zeros is a valid state: a
 * zeroed dlist is empty and a zeroed or removed node is on no list (calloc
 * needs no init, nor does a _Thread_local head). Removal clears the node, so
 * dlist_linked can tell whether a node is on its list.
 *
 * It does not allocate, own, free, count nor lock anything, and does not
 * check that a node is on the list it is removed from: a node belongs to at
 * most one list at a time, and the caller knows which. */
#ifndef KAPI_DLIST_H
#define KAPI_DLIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dlist_node {
    struct dlist_node *prev, *next;
} dlist_node;

typedef struct dlist {
    dlist_node *first, *last;
} dlist;

/* The TYPE whose MEMBER is NODE (container_of), or NULL when NODE is NULL. */
#define dlist_entry(node, type, member) ((type *)dlist_entry_at((node), offsetof(type, member)))

static inline void *
dlist_entry_at(dlist_node *n, size_t offset)
{
    return n ? (char *)n - offset : NULL;
}

static inline bool
dlist_empty(const dlist *l)
{
    return !l->first;
}

/* Whether N is on L, given that N is on L or on no list. */
static inline bool
dlist_linked(const dlist *l, const dlist_node *n)
{
    return n->prev || l->first == n;
}

static inline void
dlist_push_front(dlist *l, dlist_node *n)
{
    n->prev = NULL;
    n->next = l->first;
    if (l->first)
        l->first->prev = n;
    else
        l->last = n;
    l->first = n;
}

static inline void
dlist_push_back(dlist *l, dlist_node *n)
{
    n->next = NULL;
    n->prev = l->last;
    if (l->last)
        l->last->next = n;
    else
        l->first = n;
    l->last = n;
}

/* Takes N, which must be on L, off L and clears it. */
static inline void
dlist_remove(dlist *l, dlist_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->first = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->last = n->prev;
    n->prev = n->next = NULL;
}

/* Takes the first node off L and returns it; NULL when L is empty. */
static inline dlist_node *
dlist_pop_front(dlist *l)
{
    dlist_node *n = l->first;
    if (n)
        dlist_remove(l, n);
    return n;
}

#endif /* KAPI_DLIST_H */
