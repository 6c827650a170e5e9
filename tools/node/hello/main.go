// Command hello is the real node's smallest test image, static and shell-less:
//
//	hello            serve "hello from <hostname>" on :8080 (or $PORT)
//	hello files DIR  serve DIR's files read-only on :8080 (or $PORT), no listings: the model store
//	hello get URL    fetch URL once, print the body; exit 0 on 200, else 1 (a client pod's check)
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if len(os.Args) == 3 && os.Args[1] == "files" {
		files := http.FileServer(noListings{http.Dir(os.Args[2])})
		http.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.Printf("%s %s", r.Method, r.URL.Path)
			files.ServeHTTP(w, r)
		}))
	} else {
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s\n", host)
		})
	}
	log.Printf("listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

func get(url string) int {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s %s", resp.Status, body)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

// noListings is a file system without directory listings: a store answers only for its files.
type noListings struct{ fs http.FileSystem }

func (n noListings) Open(name string) (http.File, error) {
	file, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	if info, err := file.Stat(); err == nil && info.IsDir() {
		file.Close()
		return nil, os.ErrNotExist
	}
	return file, nil
}
